"""Which addresses the service may connect to on a user's behalf: public ones only, unless the operator allows more.

A URL a user hands us (a webhook today) must not make the service reach inside its own network:
``http://169.254.169.254/`` (cloud metadata), ``http://10.…``, ``http://[::1]``, or a DNS name that
resolves to one of those. :func:`check_url` resolves the host and refuses it when any address it
resolves to is loopback, private, link-local, site-local, multicast, reserved, unspecified or
otherwise not globally routable, unless the address lies in a network the operator allows
(``DISTILLERY_WEBHOOK_ALLOW_NETWORKS``). An IPv6 address that carries an IPv4 one, IPv4-mapped
(``::ffff:…``) or 6to4 (``2002:…``, which a 6to4 relay forwards to the IPv4 it embeds), is judged
as that IPv4 address; Teredo (``2001::/32``) is refused whole, as the standard library counts it
private. It returns the address it checked, so the caller connects to exactly that one
(:func:`pinned_request`): a name that resolves differently a moment later (DNS rebinding) cannot
slip another address in between. Nothing here opens a connection.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]
# the first rule an address breaks names the refusal; order: the most specific first
RULES: tuple[tuple[str, str], ...] = (
    ("unspecified", "is_unspecified"),
    ("loopback", "is_loopback"),
    ("link-local", "is_link_local"),
    ("site-local", "is_site_local"),
    ("multicast", "is_multicast"),
    ("reserved", "is_reserved"),
    ("private", "is_private"),
)


class UrlRefused(ValueError):
    """The URL leads somewhere the service must not connect to; ``rule`` names why in a word or two."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


@dataclass(frozen=True)
class CheckedUrl:
    url: str
    host: str
    address: IPAddress


def refused_rule(address: IPAddress, allowed: Iterable[IPNetwork] = ()) -> str | None:
    """The rule ``address`` breaks (``"loopback"``, ``"private"``, …), or None when it may be reached."""
    if isinstance(address, ipaddress.IPv6Address):
        address = address.ipv4_mapped or address.sixtofour or address
    if any(address in network for network in allowed):
        return None
    for rule, attribute in RULES:
        if getattr(address, attribute, False):  # IPv4 addresses have no is_site_local
            return rule
    return None if address.is_global else "not globally routable"


def resolve(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host`` (a literal IP resolves to itself, with no lookup)."""
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


def check_url(url: str, allowed: Sequence[IPNetwork] = (), resolver: Resolver = resolve) -> CheckedUrl:
    """Resolve ``url``'s host and refuse it unless every address is reachable; the first address is the one to use."""
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UrlRefused("scheme", f"{url!r} is not an http(s) URL with a host")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in resolver(parsed.host, port)]
    except (OSError, UnicodeError) as exc:
        raise UrlRefused("unresolvable", f"the host {parsed.host!r} does not resolve ({exc})") from exc
    if not addresses:
        raise UrlRefused("unresolvable", f"the host {parsed.host!r} resolves to no address")
    for address in addresses:
        rule = refused_rule(address, allowed)
        if rule is not None:
            via = "" if parsed.host == str(address) else f" (it resolves to {address})"
            raise UrlRefused(rule, f"{parsed.host!r} is a {rule} address{via}, and the service connects only to public addresses")
    return CheckedUrl(url=url, host=parsed.host, address=addresses[0])


def pinned_request(checked: CheckedUrl, method: str, headers: dict[str, str], content: bytes) -> httpx.Request:
    """A request that connects to the checked address, not to whatever the name resolves to by now.

    The URL carries the address; the ``Host`` header keeps the name (virtual hosts), and for https the
    TLS handshake sends the name as SNI and verifies the certificate against it.
    """
    original = httpx.URL(checked.url)
    extensions = {"sni_hostname": checked.host} if original.scheme == "https" else {}
    return httpx.Request(
        method,
        original.copy_with(host=str(checked.address)),
        headers={**headers, "Host": original.netloc.decode("ascii")},
        content=content,
        extensions=extensions,
    )
