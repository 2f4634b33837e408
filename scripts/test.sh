#!/usr/bin/env bash
# Install the test dependencies and run the test suite.
#
#   bash scripts/test.sh [pytest args...]      e.g. bash scripts/test.sh tests/interop -q
#
# What it does (idempotent; quiet on success, setup log shown on failure):
#   1. As root on Debian: apt-installs the clients and libraries the interop suite needs
#      (curl, lftp, wget, tnftp, ncftp, rclone, openssh-client, openssl and the shared libraries of
#      the FTP servers; the accuracy matrix runs each of those clients) and fetches the FTP
#      servers themselves (vsftpd, proftpd-core, proftpd-mod-crypto, pure-ftpd) with
#      `apt-get download`, unpacking them with `dpkg -x` into the folder tests/interop/.debs/root
#      The servers are never apt-installed: they all declare `Conflicts: ftp-server`, so apt
#      would keep only one, and installing one starts a daemon on port 21 on machines that
#      allow it. The test harness runs them in the foreground on high loopback ports.
#      Not root (or no apt): the Debian step is skipped with a message, and interop tests
#      whose servers are missing are skipped (or fail when CI is set).
#   2. `pip install -e '.[test]'` (into ./.venv when the interpreter is externally managed,
#      as Debian's /usr/bin/python3 is).
#   3. `python -m pytest "$@"`, exiting with pytest's status. The suite includes the product
#      as a user installs it (tests/test_install.py): the sdist and wheel built from the
#      tracked files, the wheel installed (not editable) into a fresh venv with a fresh HOME,
#      and its commands and `ftpdiag proxy` run from another directory with ftplib, curl, lftp.
#
# Environment: PYTHON=interpreter to use (default: python, else python3).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
DEBS_DIR=$REPO/tests/interop/.debs
DEBS_ROOT=$DEBS_DIR/root
mkdir -p "$DEBS_DIR"
LOG=$DEBS_DIR/setup.log
: >"$LOG"

export DEBIAN_FRONTEND=noninteractive
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

# tcpdump takes the loopback captures of tests/test_capture_live.py; tshark is what
# bench/capture.py compares ftpdiag analyze with (installed without its setuid helper);
# chromium runs the HTML report's browser tests (tests/test_report_browser.py); wget, tnftp,
# ncftp, rclone and openssh-client are clients of the accuracy matrix (tests/accuracy); tnftp
# also writes the ftp transcripts of tests/importers/test_live.py.
APT_PKGS=(curl lftp openssl ca-certificates tcpdump tshark chromium wget tnftp ncftp openssh-client
    rclone)
SERVER_PKGS=(vsftpd proftpd-core proftpd-mod-crypto pure-ftpd)
SERVER_BINS=(usr/sbin/vsftpd usr/sbin/proftpd usr/lib/proftpd/mod_tls.so usr/sbin/pure-ftpd
    usr/bin/pure-pw)

say() { echo "scripts/test.sh: $*" >&2; }
fail() {
    say "setup failed: $*"
    echo "----- $LOG -----" >&2
    cat "$LOG" >&2
    echo "----- end of $LOG -----" >&2
    exit 1
}
# Run a command with its output going to the log.
run() {
    echo "+ $*" >>"$LOG"
    "$@" >>"$LOG" 2>&1
}

APT_UPDATED=0
apt_update() {
    [ "$APT_UPDATED" = 1 ] && return 0
    APT_UPDATED=1
    run apt-get update -q
}
# `apt-get update` only if the package lists do not know the packages we need.
apt_lists_ready() {
    local want=("${SERVER_PKGS[@]}" "${APT_PKGS[@]}") known
    known=$(apt-cache policy "${want[@]}" 2>/dev/null | grep -c '^  Candidate: [^(]') || true
    [ "$known" = "${#want[@]}" ]
}
# Run an apt command; on failure (e.g. stale lists: 404), update the lists once and retry.
apt_retry() {
    run "$@" && return 0
    [ "$APT_UPDATED" = 1 ] && return 1
    apt_update || return 1
    run "$@"
}

server_bins_present() {
    local b
    for b in "${SERVER_BINS[@]}"; do [ -e "$DEBS_ROOT/$b" ] || return 1; done
}

fetch_server_debs() {
    [ -f "$DEBS_ROOT/.complete" ] && server_bins_present && return 0
    rm -rf "$DEBS_ROOT" "$DEBS_DIR"/*.deb
    # Avoid apt's "_apt cannot access the download dir" sandbox warning.
    (cd "$DEBS_DIR" && apt_retry apt-get download -q -o APT::Sandbox::User=root "${SERVER_PKGS[@]}") ||
        fail "apt-get download ${SERVER_PKGS[*]}"
    mkdir -p "$DEBS_ROOT"
    local deb
    for deb in "$DEBS_DIR"/*.deb; do
        run dpkg -x "$deb" "$DEBS_ROOT" || fail "dpkg -x $deb"
    done
    server_bins_present || fail "the unpacked packages lack a server binary"
    touch "$DEBS_ROOT/.complete"
}

# Library packages (lib*) the unpacked servers depend on: first alternative, no version.
server_lib_deps() {
    local deb
    for deb in "$DEBS_DIR"/*.deb; do
        dpkg-deb -f "$deb" Depends Pre-Depends
    done | sed -e 's/^[A-Za-z-]*: //' | tr ',' '\n' | sed -e 's/|.*//' -e 's/(.*)//' -e 's/:any//' -e 's/^ *//' -e 's/ *$//' |
        grep -E '^lib' | sort -u
}

check_shared_libs() {
    local b missing=""
    for b in "${SERVER_BINS[@]}"; do
        if ldd "$DEBS_ROOT/$b" 2>&1 | grep -q 'not found'; then
            missing+=" $b:$(ldd "$DEBS_ROOT/$b" 2>&1 | awk '/not found/ {printf " %s", $1}')"
        fi
    done
    [ -z "$missing" ] || fail "unresolved shared libraries:$missing"
}

pick_python() {
    if [ -n "${PYTHON:-}" ]; then
        echo "$PYTHON"
    elif command -v python >/dev/null 2>&1; then
        echo python
    else
        echo python3
    fi
}

# True when pip may not install into this interpreter (PEP 668, e.g. Debian's python3).
externally_managed() {
    "$1" - <<'EOF'
import os, sys, sysconfig
marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
sys.exit(0 if sys.prefix == sys.base_prefix and os.path.exists(marker) else 1)
EOF
}

PY=$(pick_python)
command -v "$PY" >/dev/null 2>&1 || fail "no Python interpreter found ($PY)"
USE_VENV=0
if externally_managed "$PY"; then
    USE_VENV=1
fi

# ---- 1. Debian packages -------------------------------------------------------------------
if [ "$(id -u)" != 0 ]; then
    say "not root: skipping the Debian packages (curl, lftp, vsftpd, proftpd, pure-ftpd);" \
        "interop tests whose servers are missing will be skipped"
elif ! command -v apt-get >/dev/null 2>&1; then
    say "no apt-get: skipping the Debian packages; interop tests whose servers are missing" \
        "will be skipped"
else
    apt_lists_ready || apt_update || fail "apt-get update"
    fetch_server_debs
    want=("${APT_PKGS[@]}")
    [ "$USE_VENV" = 1 ] && want+=(python3-venv)
    mapfile -t libs < <(server_lib_deps)
    want+=("${libs[@]}")
    mapfile -t installed < <(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${want[@]}" \
        2>/dev/null | awk '$2 == "ii" {print $1}')
    missing=()
    for p in "${want[@]}"; do
        [[ " ${installed[*]} " == *" $p "* ]] || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "wireshark-common wireshark-common/install-setuid boolean false" |
            debconf-set-selections 2>>"$LOG" || true
        apt_lists_ready || apt_update || fail "apt-get update"
        apt_retry apt-get install -y -q --no-install-recommends "${missing[@]}" ||
            fail "apt-get install ${missing[*]}"
    fi
    check_shared_libs
fi

# ---- 2. Python test dependencies -----------------------------------------------------------
if [ "$USE_VENV" = 1 ]; then
    if [ ! -x "$REPO/.venv/bin/python" ]; then
        run "$PY" -m venv "$REPO/.venv" || fail "$PY -m venv .venv (is python3-venv installed?)"
    fi
    PY=$REPO/.venv/bin/python
fi
# Skipped when pyproject.toml and the interpreter are unchanged since the last install and
# the editable install of ftpdiag still points at this checkout.
pip_stamp() {
    { sha256sum pyproject.toml; "$PY" -c 'import sys; print(sys.executable, sys.version)'; } |
        sha256sum | cut -d' ' -f1
}
installed_here() {
    (cd / && "$PY" - "$REPO") <<'EOF' >/dev/null 2>&1
import importlib.metadata as md, json, sys
url = json.loads(md.distribution("ftpdiag").read_text("direct_url.json") or "{}").get("url")
sys.exit(0 if url == "file://" + sys.argv[1] else 1)
EOF
}
PIP_STAMP=$DEBS_DIR/.pip-stamp
if [ "$(cat "$PIP_STAMP" 2>/dev/null)" != "$(pip_stamp)" ] || ! installed_here; then
    rm -f "$PIP_STAMP"
    run "$PY" -m pip install -q -e '.[test]' || fail "pip install -e '.[test]'"
    pip_stamp >"$PIP_STAMP"
fi

# ---- 3. Tests --------------------------------------------------------------------------------
set +e
"$PY" -m pytest "$@"
status=$?
exit "$status"
