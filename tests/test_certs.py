"""The local CA: created once in the config directory, private keys 0600, leaves per name."""

from __future__ import annotations

import stat
from pathlib import Path

from cryptography import x509

from ftpdiag.certs import config_dir, ensure_ca, mint_leaf


def test_config_dir_follows_xdg() -> None:
    """XDG_CONFIG_HOME wins; otherwise ~/.config/ftpdiag."""
    assert config_dir({"XDG_CONFIG_HOME": "x", "HOME": "h"}) == Path("x/ftpdiag")
    assert config_dir({"HOME": "h"}) == Path("h/.config/ftpdiag")


def test_ca_is_created_once_with_private_key_0600(tmp_path: Path) -> None:
    """The first call creates the CA, the second reuses it; only the owner can read the key."""
    pair, created = ensure_ca(tmp_path / "cfg")
    assert created and stat.S_IMODE(pair.key.stat().st_mode) == 0o600
    again, created_again = ensure_ca(tmp_path / "cfg")
    assert again == pair and not created_again
    ca = x509.load_pem_x509_certificate(pair.cert.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_leaf_names_the_listen_address_and_chains_to_the_ca(tmp_path: Path) -> None:
    """A leaf for 127.0.0.1 carries an IP SAN, is signed by the CA, and its key is 0600."""
    ca, _ = ensure_ca(tmp_path)
    leaf = mint_leaf(ca, ["127.0.0.1", "localhost"], tmp_path)
    assert stat.S_IMODE(leaf.key.stat().st_mode) == 0o600
    certs = x509.load_pem_x509_certificates(leaf.cert.read_bytes())
    san = certs[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    certs[0].verify_directly_issued_by(ca_cert)
    assert mint_leaf(ca, ["127.0.0.1", "localhost"], tmp_path) == leaf
