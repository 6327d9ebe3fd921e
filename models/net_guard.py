"""Outbound HTTP that cannot be aimed at the farm's own network (SSRF guard).

Shared by the gateway (customer image URLs) and the webhook dispatcher. A request goes out only when
its scheme is http or https and EVERY address its host resolves to is public, or inside
``FARM_ALLOWED_NETWORKS``. The host is resolved once per request (per redirect hop) and the
connection goes to an address that was checked, while the Host header, TLS SNI and certificate
check stay on the hostname: a DNS answer that changes between check and connect (rebinding) is
never used.
"""

import ipaddress
import os
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import certifi
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# (host, port) -> the addresses it resolves to, as strings. Injectable so tests can play DNS.
Resolver = Callable[[str, int], Sequence[str]]

ALLOWED_SCHEMES = ("http", "https")
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=15.0, write=15.0, pool=5.0)
DEFAULT_TOTAL_SECONDS = 60.0
DEFAULT_MAX_REDIRECTS = 3

# Named first so the error says what was hit. Python 3.11's is_global/is_private miss several of these
# (CGNAT, 192.0.0.0/24; CVE-2024-4032 is fixed only from 3.11.10/3.12.4), so they are listed explicitly.
NAMED_BLOCKS: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(network), name)
    for network, name in (
        ("169.254.169.254/32", "the cloud metadata service"),
        ("fd00:ec2::254/128", "the AWS IPv6 metadata service"),
        ("100.100.100.200/32", "the Alibaba Cloud metadata service"),
        ("0.0.0.0/8", "'this network' (0.0.0.0/8)"),
        ("100.64.0.0/10", "carrier-grade NAT space (100.64.0.0/10)"),
        ("192.0.0.0/24", "IETF protocol assignments (192.0.0.0/24)"),
        ("64:ff9b:1::/48", "local-use NAT64 (64:ff9b:1::/48)"),
    )
)
# Well-known NAT64 prefix: the IPv4 destination sits in the last 32 bits; judge that address.
NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")


class FetchError(Exception):
    """The URL could not be fetched; the message says why, in words a customer can act on."""


class BlockedURL(FetchError):
    """The URL may not be fetched at all (scheme, or an address in a blocked network)."""


class ResponseTooLarge(FetchError):
    """The body is larger than the caller allows."""


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """``"10.0.0.0/8, fd00::/8"`` → networks; raises ValueError naming a bad entry."""
    networks = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError as error:
            raise ValueError(f"{entry!r} is not a network: write CIDRs like 10.20.0.0/16 or fd00::/8") from error
    return tuple(networks)


def _own_reason(address: IPAddress) -> str | None:
    for network, name in NAMED_BLOCKS:
        if address.version == network.version and address in network:
            return name
    for name, hit in (
        ("loopback", address.is_loopback),
        ("unspecified", address.is_unspecified),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),  # before private, which also covers 240.0.0.0/4
        ("private", address.is_private),
    ):
        if hit:
            return f"a {name} address"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "a site-local address"
    return None if address.is_global else "not a public address"


def blocked_reason(address: IPAddress) -> str | None:
    """Why the farm must not connect to ``address``, or None when it is public.

    IPv4 embedded in IPv6 (mapped ``::ffff:a.b.c.d``, 6to4 ``2002::/16``, NAT64 ``64:ff9b::/96``) is
    unwrapped and judged as the IPv4 address it reaches.
    """
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return blocked_reason(address.ipv4_mapped)
        if address in NAT64_PREFIX:
            # The v6 prefix itself sits in ::/8 (reserved); only the embedded destination matters.
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
            inner = blocked_reason(embedded)
            return None if inner is None else f"{inner} ({embedded}, through NAT64)"
        if address.sixtofour is not None:
            inner = blocked_reason(address.sixtofour)
            if inner is not None:
                return f"{inner} ({address.sixtofour}, through 6to4)"
    return _own_reason(address)


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host``."""
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise FetchError(f"the host {host!r} does not resolve ({error.strerror})") from None
    return [str(answer[4][0]) for answer in answers]


def default_ssl_context() -> ssl.SSLContext:
    """Verify against SSL_CERT_FILE/SSL_CERT_DIR when set (as OpenSSL does), else certifi's bundle.

    The guarded client runs with ``trust_env=False`` (no proxies, no .netrc credentials), so httpx
    would not read these variables itself.
    """
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if cafile or capath:
        return ssl.create_default_context(cafile=cafile, capath=capath)
    return ssl.create_default_context(cafile=certifi.where())


@dataclass(frozen=True)
class NetGuard:
    """Decides which URLs the farm may reach, and hands out HTTP clients that enforce it."""

    allowed_networks: tuple[IPNetwork, ...] = ()
    resolver: Resolver = field(default=system_resolver)

    @classmethod
    def from_setting(cls, allowed_networks: str, resolver: Resolver = system_resolver) -> "NetGuard":
        """A guard from ``FARM_ALLOWED_NETWORKS`` (comma-separated CIDRs)."""
        return cls(parse_networks(allowed_networks), resolver)

    def is_allowed(self, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # the kernel connects to the IPv4 address
        return any(address.version == network.version and address in network for network in self.allowed_networks)

    def resolve(self, url: httpx.URL) -> list[IPAddress]:
        """The addresses to connect to for ``url``, all checked; raises BlockedURL if any is blocked."""
        if url.scheme not in ALLOWED_SCHEMES:
            given = f"{url.scheme}: URLs" if url.scheme else "URLs without a scheme"
            raise BlockedURL(f"only http and https URLs can be fetched, not {given}")
        host = url.raw_host.decode("ascii")  # IDNA-encoded, as DNS and TLS see it
        if not host:
            raise BlockedURL("the URL has no host")
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            answers: Iterable[str] = [str(ipaddress.ip_address(host))]
        except ValueError:
            answers = self.resolver(host, port)
        addresses: list[IPAddress] = []
        for answer in answers:
            address = ipaddress.ip_address(answer.split("%", 1)[0])  # drop an IPv6 zone id
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise FetchError(f"the host {host!r} does not resolve")
        # One bad answer refuses the whole URL: the attacker may control which answer gets used.
        for address in addresses:
            reason = None if self.is_allowed(address) else blocked_reason(address)
            if reason is not None:
                where = host if host == str(address) else f"{host} resolves to {address}, which"
                raise BlockedURL(
                    f"{where} is {reason}; the farm does not fetch from its own or private networks "
                    "(an operator can allow a network with FARM_ALLOWED_NETWORKS)"
                )
        return addresses

    def client(
        self,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        verify: ssl.SSLContext | None = None,
    ) -> httpx.Client:
        """An httpx client whose every request (and redirect hop) goes through this guard.

        ``max_redirects=0`` follows none (webhooks); each hop followed is resolved and checked again.
        """
        return httpx.Client(
            transport=PinnedTransport(self, verify=verify or default_ssl_context()),
            timeout=timeout,
            follow_redirects=max_redirects > 0,
            max_redirects=max_redirects,
            trust_env=False,  # a proxy would resolve the host itself, past the guard
        )

    def fetch(
        self,
        url: str,
        *,
        max_bytes: int,
        total_seconds: float = DEFAULT_TOTAL_SECONDS,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        verify: ssl.SSLContext | None = None,
    ) -> bytes:
        """GET ``url`` (≤ 3 redirects, each checked) and return its body, aborting past ``max_bytes``."""
        deadline = time.monotonic() + total_seconds
        try:
            with (
                self.client(timeout=timeout, verify=verify) as client,
                # identity: a compressed body could expand far past max_bytes within one chunk
                client.stream("GET", url, headers={"Accept-Encoding": "identity"}) as response,
            ):
                if response.status_code != 200:
                    raise FetchError(f"the server answered HTTP {response.status_code} {response.reason_phrase}")
                if response.headers.get("content-encoding", "identity").lower() not in ("identity", ""):
                    raise FetchError("the server sent a compressed body; serve the file uncompressed")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise ResponseTooLarge(f"the file is {int(declared):,} bytes; the limit is {max_bytes:,}")
                body = bytearray()
                for chunk in response.iter_raw():
                    body += chunk
                    if len(body) > max_bytes:
                        raise ResponseTooLarge(f"the file is larger than the limit of {max_bytes:,} bytes")
                    if time.monotonic() > deadline:
                        raise FetchError(f"the download took longer than {total_seconds:.0f} s")
                return bytes(body)
        except httpx.TooManyRedirects:
            raise FetchError(f"the URL redirected more than {DEFAULT_MAX_REDIRECTS} times") from None
        except httpx.TimeoutException:
            raise FetchError("the server did not answer in time") from None
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            raise FetchError(f"the URL could not be fetched ({error})") from None


class PinnedTransport(httpx.BaseTransport):
    """Connects to checked addresses only, keeping Host, SNI and certificate checks on the hostname."""

    def __init__(self, guard: NetGuard, *, verify: ssl.SSLContext) -> None:
        self.guard = guard
        # No keep-alive: a pooled connection (keyed by IP) must never carry another hostname's request.
        self.inner = httpx.HTTPTransport(
            verify=verify, trust_env=False, limits=httpx.Limits(max_keepalive_connections=0)
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        addresses = self.guard.resolve(request.url)
        error: httpx.ConnectError | None = None
        for address in addresses:  # the next checked address only when this one refused the connection
            pinned = httpx.Request(
                request.method,
                request.url.copy_with(host=str(address)),
                headers=request.headers,  # still carries Host: <hostname>
                stream=request.stream,
                extensions={**request.extensions, "sni_hostname": request.url.raw_host.decode("ascii")},
            )
            try:
                return self.inner.handle_request(pinned)
            except httpx.ConnectError as refused:
                error = refused
        assert error is not None
        raise error

    def close(self) -> None:
        self.inner.close()
