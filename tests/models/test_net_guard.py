"""The SSRF guard on real sockets: blocked addresses are refused before any connection is made, the
resolver's answer is used once (rebinding), redirects are checked per hop, and TLS stays on the name."""

import ipaddress
import socket
import ssl
from collections.abc import Iterator
from typing import Any

import pytest
import trustme
from pydantic import ValidationError

from models.net_guard import BlockedURL, FetchError, NetGuard, ResponseTooLarge, blocked_reason
from models.settings import Settings
from tests.http_servers import Reply, accept_recorder, recording_server

# (address, words the refusal names). Embedded IPv4 (mapped, 6to4, NAT64) is judged as what it reaches.
BLOCKED = [
    ("127.0.0.1", "loopback"),
    ("::1", "loopback"),
    ("::ffff:127.0.0.1", "loopback"),
    ("2002:7f00:1::", "6to4"),
    ("64:ff9b::7f00:1", "NAT64"),
    ("10.0.0.1", "private"),
    ("::ffff:10.0.0.1", "private"),
    ("2002:a00:1::", "6to4"),
    ("64:ff9b::a00:1", "NAT64"),
    ("64:ff9b:1::a00:1", "local-use NAT64"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("fc00::1", "private"),
    ("169.254.169.254", "metadata"),
    ("::ffff:169.254.169.254", "metadata"),
    ("169.254.1.1", "link-local"),
    ("fe80::1", "link-local"),
    ("100.100.100.200", "metadata"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("fd00:ec2::254", "metadata"),
    ("0.0.0.0", "this network"),
    ("0.1.2.3", "this network"),
    ("::", "unspecified"),
    ("192.0.0.8", "IETF protocol assignments"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("240.0.0.1", "address"),  # reserved (Python files it under private)
    ("255.255.255.255", "address"),
    ("198.18.0.1", "private"),
    ("::7f00:1", "reserved"),  # IPv4-compatible (deprecated) form of 127.0.0.1
    ("fec0::1", "site-local"),
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::"]


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every TCP connection httpx opens (httpcore's sync backend calls socket.create_connection)."""
    opened: list[Any] = []
    real = socket.create_connection

    def recording(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        opened.append(address)
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", recording)
    yield opened


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def answers(*addresses: str) -> Any:
    """A resolver that gives ``addresses`` for every name and counts its calls."""

    def resolve(host: str, port: int) -> list[str]:
        resolve.calls.append(host)  # type: ignore[attr-defined]
        return list(addresses)

    resolve.calls = []  # type: ignore[attr-defined]
    return resolve


@pytest.mark.parametrize(("address", "named"), BLOCKED)
def test_blocked_reason_names_the_range(address: str, named: str) -> None:
    reason = blocked_reason(ipaddress.ip_address(address))
    assert reason is not None and named in reason


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(("address", "named"), BLOCKED)
def test_a_name_resolving_to_a_blocked_address_is_refused_before_connecting(
    address: str, named: str, connections: list[Any]
) -> None:
    resolver = answers(address)
    with pytest.raises(BlockedURL, match=named):
        NetGuard(resolver=resolver).fetch("http://images.example.com/cat.png", max_bytes=1000)
    assert connections == []
    assert resolver.calls == ["images.example.com"]


@pytest.mark.parametrize(("address", "named"), BLOCKED)
def test_a_blocked_address_literal_is_refused_before_connecting(
    address: str, named: str, connections: list[Any]
) -> None:
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(BlockedURL, match=named):
        NetGuard(resolver=answers()).fetch(f"https://{host}:8443/cat.png", max_bytes=1000)
    assert connections == []


def test_loopback_spellings_never_reach_a_listening_socket() -> None:
    with accept_recorder("127.0.0.1") as listener:
        port = listener.port
        for url in (
            f"http://127.0.0.1:{port}/",
            f"http://[::ffff:127.0.0.1]:{port}/",
            f"http://0.0.0.0:{port}/",  # Linux connects 0.0.0.0 to this host
            f"http://localhost:{port}/",
            f"http://2130706433:{port}/",  # 127.0.0.1 as one number
            f"http://127.1:{port}/",
            f"http://0x7f.0.0.1:{port}/",
        ):
            with pytest.raises(BlockedURL):
                NetGuard().fetch(url, max_bytes=1000)
    assert listener.accepted == []


def test_the_connection_spy_sees_real_connections(connections: list[Any]) -> None:
    """Control for the tests above: an allowed fetch does show up as a connection."""
    with recording_server({"/": Reply(b"ok")}) as server:
        assert NetGuard.from_setting("127.0.0.0/8").fetch(f"{server.url}/", max_bytes=100) == b"ok"
    assert connections == [("127.0.0.1", server.port)]


def test_one_blocked_answer_among_public_ones_refuses_the_host(connections: list[Any]) -> None:
    with pytest.raises(BlockedURL, match="10.0.0.1"):
        NetGuard(resolver=answers("93.184.216.34", "10.0.0.1")).fetch("https://cdn.example.com/a.png", max_bytes=1)
    assert connections == []


def test_dns_rebinding_connects_only_to_the_address_that_was_checked() -> None:
    """First answer acceptable (127.0.0.2, allow-listed as a stand-in for a public address), every later
    answer 127.0.0.3 (blocked): the guard resolves once and connects where it checked."""
    with recording_server({"/cat.png": Reply(b"cat")}, host="127.0.0.2") as server:
        with accept_recorder("127.0.0.3", server.port) as private:
            calls: list[str] = []

            def rebinding(host: str, port: int) -> list[str]:
                calls.append(host)
                return ["127.0.0.2"] if len(calls) == 1 else ["127.0.0.3"]

            guard = NetGuard.from_setting("127.0.0.2/32", resolver=rebinding)
            body = guard.fetch(f"http://rebind.example.com:{server.port}/cat.png", max_bytes=100)
    assert body == b"cat"
    assert calls == ["rebind.example.com"]
    assert private.accepted == []
    assert [seen.host for seen in server.requests] == [f"rebind.example.com:{server.port}"]


def test_every_redirect_hop_is_resolved_and_checked_again() -> None:
    with accept_recorder("127.0.0.3") as private:
        hop = f"http://rebind.example.com:{private.port}/inner.png"
        routes = {"/cat.png": Reply(status=302, headers={"Location": hop})}
        with recording_server(routes, host="127.0.0.2", port=private.port) as server:
            calls: list[str] = []

            def rebinding(host: str, port: int) -> list[str]:
                calls.append(host)
                return ["127.0.0.2"] if len(calls) == 1 else ["127.0.0.3"]

            guard = NetGuard.from_setting("127.0.0.2/32", resolver=rebinding)
            with pytest.raises(BlockedURL, match="127.0.0.3"):
                guard.fetch(f"http://rebind.example.com:{server.port}/cat.png", max_bytes=100)
    assert calls == ["rebind.example.com", "rebind.example.com"]
    assert private.accepted == []


def test_redirects_are_followed_up_to_three_hops() -> None:
    routes = {f"/{n}": Reply(status=302, headers={"Location": f"/{n + 1}"}) for n in range(5)}
    routes["/3"] = Reply(b"arrived")
    with recording_server(routes) as server:
        guard = NetGuard.from_setting("127.0.0.0/8")
        assert guard.fetch(f"{server.url}/0", max_bytes=100) == b"arrived"
        routes["/3"] = Reply(status=302, headers={"Location": "/4"})
        with pytest.raises(FetchError, match="more than 3"):
            guard.fetch(f"{server.url}/0", max_bytes=100)


def test_webhook_style_clients_follow_no_redirect() -> None:
    with recording_server({"/": Reply(status=307, headers={"Location": "/elsewhere"})}) as server:
        with NetGuard.from_setting("127.0.0.0/8").client(max_redirects=0) as client:
            assert client.get(f"{server.url}/").status_code == 307
    assert [seen.path for seen in server.requests] == ["/"]


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/cat.png",
        "gopher://example.com:70/_GET",
        "javascript:alert(1)",
        "example.com/cat.png",
        "http:///cat.png",
    ],
)
def test_only_http_and_https_urls_with_a_host_are_fetched(url: str, connections: list[Any]) -> None:
    resolver = answers("93.184.216.34")
    with pytest.raises(FetchError):
        NetGuard(resolver=resolver).fetch(url, max_bytes=100)
    assert connections == [] and resolver.calls == []


def test_allow_list_lets_a_loopback_https_server_through_with_host_and_sni_on_the_name(
    ca: trustme.CA, trusting: ssl.SSLContext, connections: list[Any]
) -> None:
    with recording_server({"/cat.png": Reply(b"meow")}, tls=ca, hostnames=("localhost",)) as server:
        url = f"https://localhost:{server.port}/cat.png"
        with pytest.raises(BlockedURL, match="loopback"):
            NetGuard().fetch(url, max_bytes=100, verify=trusting)
        assert NetGuard.from_setting("127.0.0.0/8").fetch(url, max_bytes=100, verify=trusting) == b"meow"
    assert connections == [("127.0.0.1", server.port)]  # pinned to the checked address
    assert server.sni == ["localhost"]
    assert [seen.host for seen in server.requests] == [f"localhost:{server.port}"]


def test_the_certificate_is_checked_against_the_hostname_not_the_pinned_address(
    ca: trustme.CA, trusting: ssl.SSLContext
) -> None:
    with recording_server({"/cat.png": Reply(b"meow")}, tls=ca, hostnames=("localhost", "127.0.0.1")) as server:
        guard = NetGuard.from_setting("127.0.0.0/8", resolver=answers("127.0.0.1"))
        with pytest.raises(FetchError, match="certificate"):
            guard.fetch(f"https://images.example.com:{server.port}/cat.png", max_bytes=100, verify=trusting)
        with pytest.raises(FetchError, match="certificate"):  # and against a CA the farm trusts
            guard.fetch(f"https://localhost:{server.port}/cat.png", max_bytes=100)
    assert server.requests == []


def test_the_next_checked_address_is_tried_when_one_refuses_the_connection() -> None:
    with recording_server({"/": Reply(b"second")}) as server:
        with accept_recorder("127.0.0.3") as closed:
            pass  # bound and released: nothing listens on 127.0.0.3 now
        guard = NetGuard.from_setting("127.0.0.0/8", resolver=answers("127.0.0.3", "127.0.0.1"))
        assert guard.fetch(f"http://two.example.com:{server.port}/", max_bytes=100) == b"second"
    assert closed.accepted == []


@pytest.mark.parametrize("declare_length", [True, False])
def test_a_body_over_the_cap_is_abandoned(declare_length: bool) -> None:
    big = Reply(b"x" * 3_000_000, declare_length=declare_length)
    with recording_server({"/big": big, "/small": Reply(b"x" * 1000)}) as server:
        guard = NetGuard.from_setting("127.0.0.0/8")
        with pytest.raises(ResponseTooLarge):
            guard.fetch(f"{server.url}/big", max_bytes=1_000_000)
        assert len(guard.fetch(f"{server.url}/small", max_bytes=1000)) == 1000


def test_error_statuses_and_compressed_bodies_are_refused() -> None:
    routes = {"/gone": Reply(b"", 404), "/gz": Reply(b"\x1f\x8b", headers={"Content-Encoding": "gzip"})}
    with recording_server(routes) as server:
        guard = NetGuard.from_setting("127.0.0.0/8")
        with pytest.raises(FetchError, match="HTTP 404"):
            guard.fetch(f"{server.url}/gone", max_bytes=100)
        with pytest.raises(FetchError, match="compressed"):
            guard.fetch(f"{server.url}/gz", max_bytes=100)


def test_allowed_networks_setting_is_parsed_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FARM_ALLOWED_NETWORKS", "10.20.0.0/16, fd00::/8")
    guard = NetGuard.from_setting(Settings().allowed_networks)
    assert [str(network) for network in guard.allowed_networks] == ["10.20.0.0/16", "fd00::/8"]
    assert guard.is_allowed(ipaddress.ip_address("10.20.3.4"))
    assert not guard.is_allowed(ipaddress.ip_address("10.21.0.1"))
    assert Settings(allowed_networks="").allowed_networks == ""
    with pytest.raises(ValidationError, match="not a network"):
        Settings(allowed_networks="10.0.0.0/33")


def test_international_names_are_resolved_in_their_idna_form(connections: list[Any]) -> None:
    resolver = answers("10.0.0.1")
    with pytest.raises(BlockedURL):
        NetGuard(resolver=resolver).fetch("https://bücher.example/cover.png", max_bytes=100)
    assert resolver.calls == ["xn--bcher-kva.example"] and connections == []
