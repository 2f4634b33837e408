"""Routing at login, without sockets: ``user@host[:port]`` and its variants, and the policy of
which destinations a gateway may dial (addresses here are data; nothing dials them)."""

from __future__ import annotations

import pytest

from ftpdiag.core.routing import Route, RouteSyntaxError, UpstreamPolicy, parse_route


@pytest.mark.parametrize(
    ("login", "route"),
    [
        ("bob@127.0.0.1", Route("bob", "127.0.0.1", 21)),
        ("bob@127.0.0.1:2121", Route("bob", "127.0.0.1", 2121)),
        ("bob@127.0.0.1 2121", Route("bob", "127.0.0.1", 2121)),
        ("bob@ftp.example.org", Route("bob", "ftp.example.org", 21)),
        ("me@mail.example@10.0.0.5:21", Route("me@mail.example", "10.0.0.5", 21)),
        ("bob@[::1]:2121", Route("bob", "::1", 2121)),
        ("bob@[::1]", Route("bob", "::1", 21)),
        ("bob@::1", Route("bob", "::1", 21)),
        ("anonymous@127.0.0.2", Route("anonymous", "127.0.0.2", 21)),
    ],
)
def test_logins_name_user_and_server(login: str, route: Route) -> None:
    """Each common spelling of a gateway login gives the user and the server to dial."""
    assert parse_route(login) == route


@pytest.mark.parametrize(
    ("login", "reason"),
    [
        ("bob", "user@host"),
        ("@127.0.0.1", "user@host"),
        ("bob@", "no host"),
        ("bob@127.0.0.1:0", "port number"),
        ("bob@127.0.0.1:99999", "port number"),
        ("bob@127.0.0.1:ftp", "port number"),
        ("bob@[::1", "unclosed"),
        ("bob@[::1]x", "unexpected"),
        ("bob@a:b:c", "IPv6"),
    ],
)
def test_malformed_logins_say_why(login: str, reason: str) -> None:
    """A login that names no usable server is refused with a reason a 530 can carry."""
    with pytest.raises(RouteSyntaxError, match=reason):
        parse_route(login)


def test_default_policy_allows_loopback_and_private_ranges_only() -> None:
    """Without --allow-upstream: this machine and private networks, nothing public."""
    policy = UpstreamPolicy()
    for address in ("127.0.0.1", "127.0.0.2", "10.1.2.3", "172.16.0.1", "192.168.1.1", "::1"):
        assert policy.refusal(address, address) is None
    refusal = policy.refusal("ftp.example.org", "203.0.113.7")
    assert refusal is not None and "--allow-upstream 203.0.113.7" in refusal
    assert "ftp.example.org (203.0.113.7)" in refusal
    assert policy.refusal("::ffff:8.8.8.8", "::ffff:8.8.8.8") is not None


def test_allowed_names_and_networks_replace_the_defaults() -> None:
    """A name is allowed by name whatever it resolves to; an address must be in a network;
    naming anything replaces the default ranges."""
    policy = UpstreamPolicy.from_args(["198.51.100.0/24", "FTP.Example.org."])
    assert policy.refusal("ftp.example.org", "203.0.113.7") is None
    assert policy.refusal("198.51.100.9", "198.51.100.9") is None
    assert policy.refusal("other.example", "198.51.100.10") is None
    assert policy.refusal("127.0.0.1", "127.0.0.1") is not None
    assert UpstreamPolicy.from_args(["[::1]"]).refusal("::1", "::1") is None
