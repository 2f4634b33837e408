"""TLS for both sides of the proxy, with the session resumption FTPS servers demand.

Toward clients the proxy is a TLS server with one ``SSL.Context`` per listener and a session-id
context, so a client's data connection can resume its control connection's session (clients
such as curl and lftp do, and some check it). Toward the server the proxy is a TLS client
that verifies the certificate (system trust plus ``--upstream-ca``) and, on data connections,
offers the control connection's session: vsftpd with ``require_ssl_reuse=YES`` and FileZilla
Server refuse a data connection that does not resume it (RFC 4217 §10.2 leaves this to them).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from OpenSSL import SSL
from OpenSSL._util import lib as _ssl_lib
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from zope.interface import implementer

# OpenSSL's X509_V_ERR_* numbers for the reasons a person can act on.
VERIFY_REASONS = {
    9: "certificate not yet valid",
    10: "certificate expired",
    18: "self-signed certificate",
    19: "unknown certificate authority (a self-signed root that is not trusted)",
    20: "unknown certificate authority (issuer not trusted)",
    21: "unknown certificate authority (cannot verify the first certificate)",
    62: "wrong host name",
    64: "wrong IP address",
}


def _context(method: int = SSL.TLS_METHOD) -> SSL.Context:
    ctx = SSL.Context(method)
    ctx.set_options(SSL.OP_NO_SSLv2 | SSL.OP_NO_SSLv3 | SSL.OP_NO_COMPRESSION)
    return ctx


@implementer(IOpenSSLServerConnectionCreator)
class ClientFacingTLS:
    """The proxy's TLS server side: its certificate, and sessions clients can resume."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = _context()
        self.context.use_certificate_chain_file(str(cert))
        self.context.use_privatekey_file(str(key))
        self.context.check_privatekey()
        self.context.set_session_id(b"ftpdiag")
        self.context.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
        # TLS 1.3 servers send session tickets *after* the handshake. A client that uploads
        # never reads them, so when it closes its data socket the unread ticket turns the
        # close into a reset, and a reset makes the proxy's kernel drop upload bytes not yet
        # read (seen with lftp). TLS 1.2 hands tickets over inside the handshake.
        self.context.set_max_proto_version(SSL.TLS1_2_VERSION)

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        conn = SSL.Connection(self.context, None)
        conn.set_app_data(tlsProtocol)
        return conn

    def getContext(self) -> SSL.Context:  # the older IOpenSSLContextFactory interface
        return self.context


@dataclass
class UpstreamTLS:
    """How the proxy speaks TLS to the server: trust, and the name to verify."""

    server_name: str
    verify: bool = True
    ca_file: Path | None = None
    context: SSL.Context = field(init=False, repr=False)
    failures: dict[int, int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.context = _context()
        if self.verify:
            self.context.set_default_verify_paths()
            if self.ca_file is not None:
                self.context.load_verify_locations(str(self.ca_file))
            self.context.set_verify(SSL.VERIFY_PEER, self._record)
        else:
            self.context.set_verify(SSL.VERIFY_NONE, lambda *a: True)
        self.context.set_session_cache_mode(SSL.SESS_CACHE_CLIENT)

    def _record(self, conn: SSL.Connection, cert: Any, errno: int, depth: int, ok: int) -> bool:
        if not ok and id(conn) not in self.failures:
            self.failures[id(conn)] = errno
        return bool(ok)

    def failure_reason(self, conn: SSL.Connection | None) -> str | None:
        """Why verification failed on ``conn``, in words, if it did."""
        if conn is None:
            return None
        errno = self.failures.pop(id(conn), None)
        if errno is None:
            return None
        return VERIFY_REASONS.get(errno, f"certificate verification error {errno}")

    def creator(self, resume: Callable[[], SSL.Session | None] | None = None) -> UpstreamConnection:
        return UpstreamConnection(self, resume)


@implementer(IOpenSSLClientConnectionCreator)
class UpstreamConnection:
    """Creates the proxy's TLS client connection, resuming a session when one is given."""

    def __init__(self, tls: UpstreamTLS, resume: Callable[[], SSL.Session | None] | None) -> None:
        self.tls = tls
        self.resume = resume

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        conn = SSL.Connection(self.tls.context, None)
        conn.set_app_data(tlsProtocol)
        name = self.tls.server_name
        try:
            ipaddress.ip_address(name)
        except ValueError:
            conn.set_tlsext_host_name(name.encode("idna"))
        session = self.resume() if self.resume is not None else None
        if session is not None:
            conn.set_session(session)
        conn.set_connect_state()
        return conn


def check_peer_name(conn: SSL.Connection, name: str) -> str | None:
    """Service-identity check of the server certificate against the name dialled."""
    from service_identity import VerificationError
    from service_identity.pyopenssl import verify_hostname, verify_ip_address

    try:
        ipaddress.ip_address(name)
        is_ip = True
    except ValueError:
        is_ip = False
    try:
        if is_ip:
            verify_ip_address(conn, name)
        else:
            verify_hostname(conn, name)
    except VerificationError:
        return "wrong IP address" if is_ip else "wrong host name"
    except Exception as exc:
        return f"certificate names cannot be checked ({type(exc).__name__})"
    return None


def resumable_session(conn: SSL.Connection) -> SSL.Session | None:
    """The connection's session for a later handshake to resume, read when the connection
    ends: by then a TLS 1.3 server's tickets, sent after the handshake, have arrived."""
    try:
        return conn.get_session()
    except SSL.Error:
        return None


def tls_facts(conn: SSL.Connection) -> dict[str, Any]:
    """What the log records of a TLS connection: version, cipher, resumption, peer."""
    facts: dict[str, Any] = {
        "version": conn.get_protocol_version_name(),
        "cipher": conn.get_cipher_name(),
        "resumed": bool(_ssl_lib.SSL_session_reused(conn._ssl)),  # pyOpenSSL has no accessor
    }
    cert = conn.get_peer_certificate()
    if cert is not None:
        crypto = cert.to_cryptography()
        facts["peer_subject"] = crypto.subject.rfc4514_string()
        facts["peer_not_after"] = crypto.not_valid_after_utc.isoformat()
    return facts


def openssl_detail(failure: Any) -> str:
    """OpenSSL's own words from a failed handshake (``SSL.Error`` carries a list of tuples)."""
    value = getattr(failure, "value", failure)
    if isinstance(value, SSL.Error) and value.args and isinstance(value.args[0], list):
        parts = [str(item[-1]) for item in value.args[0] if isinstance(item, tuple)]
        if parts:
            return "; ".join(parts)
    text = str(value) or type(value).__name__
    return text


def classify_handshake(detail: str, verify_reason: str | None = None) -> str:
    """A short reason a person can act on, from OpenSSL's detail."""
    if verify_reason:
        return verify_reason
    d = detail.lower()
    if any(
        w in d for w in ("unknown ca", "certificate unknown", "bad certificate", "decrypt error")
    ):
        return "the peer does not trust the certificate"
    if any(
        w in d for w in ("wrong version", "unsupported protocol", "no protocols", "version too")
    ):
        return "TLS version mismatch"
    if "certificate verify failed" in d:
        return "certificate verification failed"
    if "http request" in d or "packet length" in d or "record layer" in d:
        return "the peer does not speak TLS"
    return "handshake failed"


@dataclass
class ProxyTLS:
    """The TLS material of a proxy listener: what it shows clients, how it trusts servers."""

    client_facing: ClientFacingTLS | None = None
    upstream: UpstreamTLS | None = None

    def start(
        self,
        transport: Any,
        side: str,
        normal: bool,
        resume: Callable[[], SSL.Session | None] | None = None,
    ) -> None:
        """Start TLS on ``transport``: as server toward clients, as client toward the server."""
        if side == "client":
            assert self.client_facing is not None
            transport.startTLS(self.client_facing, normal)
        else:
            assert self.upstream is not None
            transport.startTLS(self.upstream.creator(resume), normal)
