"""``python -m ftpdiag``."""

import sys

from ftpdiag.cli import main

sys.exit(main())
