"""Real servers' own messages and non-FTP peers, without sockets: the data file is valid, each
known message maps to its specific rule as the one headline, unknown texts fall back."""

from __future__ import annotations

import pytest

from ftpdiag.rules.engine import rule_texts
from ftpdiag.rules.server_messages import WHERE, known_messages, match, silent_ports
from tests.test_outcomes import errors, login, summary
from tests.test_rules_unit import close, command, greeting, reply, run

# One real text per entry of server_messages.toml: (code, text, where, rule).
SAMPLES = [
    (None, "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3", "line", "peer.ssh"),
    (None, "HTTP/1.1 400 Bad Request", "line", "peer.http"),
    (None, "+OK Dovecot ready.", "line", "peer.mail"),
    (None, "\x16\x03\x01\x00\xa5", "line", "peer.implicit_tls"),
    (220, "mail.example.org ESMTP Postfix (Debian/GNU)", "greeting", "peer.mail"),
    (500, "OOPS: vsftpd: refusing to run with writable root inside chroot()", "reply",
     "server.writable_chroot"),
    (500, "OOPS: prctl PR_SET_SECCOMP failed", "reply", "server.seccomp_sandbox"),
    (500, "OOPS: child died", "reply", "server.seccomp_sandbox"),
    (500, "OOPS: vsftpd: not found: directory given in 'secure_chroot_dir':/var/run/vsftpd/empty",
     "reply", "server.secure_chroot_dir"),
    (500, "OOPS: cannot change directory:/home/bob", "reply", "server.home_missing"),
    (500, "OOPS: vsftpd: cannot locate user specified in 'ftp_username':ftp", "reply",
     "server.user_entry"),
    (500, "OOPS: vsf_sysutil_bind", "reply", "server.data_port_bind"),
    (500, "OOPS: capset", "reply", "server.capabilities"),
    (500, "OOPS: pam_authenticate", "reply", "server.pam"),
    (425, "Security: Bad IP connecting.", "reply", "server.bad_ip_connecting"),
    (500, "OOPS: config file not owned by correct user, or not a file", "reply",
     "server.internal_error"),
    (530, "This is a private system - No anonymous login", "reply", "login.anonymous_refused"),
    (530, "Sorry, cleartext sessions and weak ciphers are not accepted on this server.\n"
     "Please reconnect using TLS security mechanisms.", "reply", "tls.required"),
    (521, "Data connection cannot be opened with this PROT setting.", "reply",
     "tls.prot_p_required"),
    (500, "Sorry, but I won't connect to ports < 1024", "reply", "server.low_port"),
    (550, "Failed to open file.", "reply", "file.unavailable"),
    (550, "Failed to change directory.", "reply", "file.unavailable"),
    (553, "Could not create file.", "reply", "file.permission"),
    (451, "Disk full - please upload later", "reply", "server.disk_full"),
    (552, "Quota exceeded: [big.bin] won't be saved", "reply", "server.quota_exceeded"),
    (421, "No transfer timeout (300 seconds): closing control connection", "reply",
     "server.no_transfer_timeout"),
    (530, "User cannot log in, home directory inaccessible.", "reply", "server.home_missing"),
    (530, "Sorry, no ANONYMOUS access allowed.", "reply", "login.anonymous_refused"),
    (425, "Rejected data connection from foreign address 127.0.0.2:40000.", "reply",
     "server.bad_ip_connecting"),
    (550, "upload.bin: Read-only file system", "reply", "server.read_only_fs"),
    (451, "Error writing file: No space left on device", "reply", "server.disk_full"),
    (552, "Disk quota exceeded", "reply", "server.quota_exceeded"),
    (550, "The process cannot access the file because it is being used by another process.",
     "reply", "file.in_use"),
    (550, "up.bin: Operation not permitted", "reply", "file.permission"),
    (550, "pub: Not a regular file", "reply", "file.not_regular"),
    (550, "old: Directory not empty", "reply", "file.not_empty"),
    (550, "new: File exists", "reply", "file.exists"),
    (None, "\x16\x03\x01\x02\x00", "client", "client.implicit_tls"),
    (None, "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3", "client", "client.sftp"),
]  # fmt: skip


def test_data_file_is_valid() -> None:
    """Every entry names a described rule and a known place; every rule has a sample here."""
    texts = rule_texts()
    for message in known_messages():
        assert message.rule in texts, message
        assert message.where in WHERE, message
    assert {m.rule for m in known_messages()} == {rule for *_, rule in SAMPLES}
    assert all(rule in texts for rule in silent_ports().values())


@pytest.mark.parametrize(("code", "text", "where", "rule"), SAMPLES)
def test_known_message_matches(code: int | None, text: str, where: str, rule: str) -> None:
    """Each real message is recognised as what it is."""
    found = match(text, code, where)
    assert found is not None and found.rule == rule


@pytest.mark.parametrize(
    ("code", "text", "where"),
    [
        (530, "Login incorrect.", "reply"),
        (220, "(vsFTPd 3.0.3)", "greeting"),
        (220, "ProFTPD Server (Debian) [127.0.0.1]", "greeting"),
        (550, "No such file or directory.", "reply"),
    ],
)
def test_ordinary_texts_are_not_special(code: int, text: str, where: str) -> None:
    """Texts no entry knows fall back to the rules and the catalog."""
    assert match(text, code, where) is None


def test_a_success_that_quotes_a_known_message_is_no_refusal() -> None:
    """226 or 250 replies that mention an existing file or a quota raise nothing."""
    out = run(
        command("RNTO", "b"),
        reply(250, "Rename successful; the old name already exists no more", "RNTO", "b"),
        reply(226, "Transfer complete. Quota exceeded warnings: none", "STOR", "c"),
    )
    assert errors(out) == []


def test_vsftpd_writable_chroot_is_one_headline() -> None:
    """500 OOPS after PASS: the writable-chroot rule is the root cause, not "syntax error"."""
    out = run(
        greeting(220, "(vsFTPd 3.0.3)"),
        command("USER", "bob"),
        reply(331, "Please specify the password.", "USER", "bob", state=("before_login",)),
        command("PASS", "****"),
        reply(
            500,
            "OOPS: vsftpd: refusing to run with writable root inside chroot()",
            "PASS",
            "****",
            state=("before_login",),
        ),
        close("server closed"),
    )
    assert errors(out) == ["server.writable_chroot"]
    cause = summary(out)["root_cause"]
    assert cause["rule"] == "server.writable_chroot"
    assert "allow_writeable_chroot=YES" in cause["remedy"]
    assert cause["reply_meaning"]  # the catalog's generic words, as evidence under it
    assert summary(out)["outcome_text"].startswith("the login failed")


def test_ssh_banner_is_named_and_no_greeting_is_not_a_second_error() -> None:
    """An SSH banner where the 220 was due: peer.ssh, and the timeout adds no headline."""
    banner = ("protocol.malformed_reply", {"text": "SSH-2.0-OpenSSH_9.2p1", "greeting": True})
    out = run(
        ("session.open", {"client": "127.0.0.1:5", "upstream": "127.0.0.1:22"}),
        banner,
        ("greeting.timeout", {"seconds": 10}),
        close("no greeting"),
    )
    assert errors(out) == ["peer.ssh"]
    cause = summary(out)["root_cause"]
    assert cause["rule"] == "peer.ssh" and "SFTP" in cause["remedy"]


def test_silent_implicit_tls_port() -> None:
    """No greeting from port 990: an implicit-FTPS port, with --upstream-tls implicit as fix."""
    out = run(
        ("session.open", {"client": "127.0.0.1:5", "upstream": "127.0.0.1:990"}),
        ("greeting.timeout", {"seconds": 10}),
        close("no greeting"),
    )
    assert errors(out) == ["peer.implicit_tls"]
    assert "--upstream-tls implicit" in summary(out)["root_cause"]["remedy"]


def test_smtp_greeting_is_a_mail_server() -> None:
    """A 220 that says ESMTP is a mail server, though FTP greets with 220 too."""
    out = run(
        ("session.open", {"client": "127.0.0.1:5", "upstream": "127.0.0.1:25"}),
        greeting(220, "mx.example.org ESMTP Postfix"),
        *login()[:2],
        close("server closed"),
    )
    assert "greeting.ready" not in [f["rule"] for e, f in out if e == "diagnosis"]
    assert summary(out)["root_cause"]["rule"] == "peer.mail"


def test_implicit_tls_client_and_sftp_client() -> None:
    """A client whose first bytes are a TLS ClientHello, or an SSH banner, is named."""
    hello = ("control.closed", {"side": "client", "clean": True, "client_head": "\x16\x03\x01\x02"})
    assert errors(run(hello)) == ["client.implicit_tls"]
    out = run(greeting(), command("SSH-2.0-OPENSSH_9.2P1"), reply(500, "Unknown command.", "X"))
    assert errors(out)[0] == "client.sftp"
    later = run(greeting(), command("NOOP"), command("SSH-2.0-X"))
    assert "client.sftp" not in errors(later)  # only a first line says what the client is
