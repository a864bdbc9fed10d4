"""core.url_guard: which addresses a user's URL may lead to, and a request pinned to the address that was checked.

Names are resolved by a resolver the test hands in (or the hosts file, for ``localhost``), so no
DNS query leaves the machine; the one connection made goes to a receiver on 127.0.0.1.
"""

from __future__ import annotations

import ipaddress

import httpx
import pytest
from webhook_receiver import Receiver

from core.url_guard import UrlRefused, check_url, pinned_request, refused_rule

REFUSED = [
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback"),
    ("::1", "loopback"),
    ("169.254.169.254", "link-local"),
    ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("fc00::1", "private"),
    ("240.0.0.1", "reserved"),
    ("100.64.0.1", "not globally routable"),
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:169.254.169.254", "link-local"),
    ("::ffff:10.0.0.1", "private"),
    ("2002:7f00:1::", "loopback"),  # 6to4 carrying 127.0.0.1
    ("2002:a9fe:a9fe::1", "link-local"),  # 6to4 carrying 169.254.169.254
    ("2002:a00:1::", "private"),  # 6to4 carrying 10.0.0.1
    ("2002::", "unspecified"),  # 6to4 carrying 0.0.0.0
    ("fec0::1", "site-local"),
    ("feff:ffff::1", "site-local"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "private"),  # Teredo: refused whatever it carries
    ("2001:0:5db8:d822::", "private"),
]


@pytest.mark.parametrize(("address", "rule"), REFUSED)
def test_inner_addresses_are_refused_by_name(address, rule):
    assert refused_rule(ipaddress.ip_address(address)) == rule


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:93.184.216.34", "2002:5db8:d822::1"])
def test_public_addresses_pass(address):
    assert refused_rule(ipaddress.ip_address(address)) is None


def test_the_operator_allows_ranges_and_only_those():
    allowed = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("10.8.0.0/16")]
    assert refused_rule(ipaddress.ip_address("127.0.0.1"), allowed) is None
    assert refused_rule(ipaddress.ip_address("::ffff:127.0.0.1"), allowed) is None
    assert refused_rule(ipaddress.ip_address("10.8.3.4"), allowed) is None
    assert refused_rule(ipaddress.ip_address("10.9.0.1"), allowed) == "private"
    assert refused_rule(ipaddress.ip_address("::1"), allowed) == "loopback"
    assert refused_rule(ipaddress.ip_address("2002:7f00:1::"), allowed) is None
    assert refused_rule(ipaddress.ip_address("2002:a09:1::"), allowed) == "private"


def test_a_name_is_judged_by_every_address_it_resolves_to():
    def resolver(host: str, port: int) -> list[str]:
        return {"rebind.test": ["93.184.216.34", "10.0.0.5"], "public.test": ["93.184.216.34"]}[host]

    with pytest.raises(UrlRefused) as refused:
        check_url("https://rebind.test/hook", resolver=resolver)
    assert refused.value.rule == "private" and "resolves to 10.0.0.5" in str(refused.value)
    assert check_url("https://public.test/hook", resolver=resolver).address == ipaddress.ip_address("93.184.216.34")


def test_localhost_from_the_hosts_file_is_loopback():
    with pytest.raises(UrlRefused) as refused:
        check_url("http://localhost:9/")
    assert refused.value.rule == "loopback"


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("ftp://93.184.216.34/x", "scheme"),
        ("http:///nohost", "scheme"),
        ("http://[::1]:8080/", "loopback"),
        ("http://127.1/", "loopback"),
        ("http://[2002:7f00:1::]:8080/", "loopback"),
        ("http://[fec0::1]/", "site-local"),
    ],
)
def test_urls_that_are_not_public_http(url, rule):
    with pytest.raises(UrlRefused) as refused:
        check_url(url)
    assert refused.value.rule == rule


def test_an_unresolvable_name_is_refused():
    def resolver(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    with pytest.raises(UrlRefused) as refused:
        check_url("https://nowhere.test/", resolver=resolver)
    assert refused.value.rule == "unresolvable"


def test_a_pinned_request_goes_to_the_checked_address_and_keeps_the_name():
    """``rebind.test`` is never looked up by httpx: the request carries the checked address, the name stays in Host."""
    receiver = Receiver({})
    port = int(receiver.url.rsplit(":", 1)[1])
    checked = check_url(f"http://rebind.test:{port}/hook?x=1", [ipaddress.ip_network("127.0.0.1/32")], resolver=lambda host, port: ["127.0.0.1"])
    with httpx.Client() as client:
        assert client.send(pinned_request(checked, "POST", {"X-Probe": "1"}, b"{}")).status_code == 200
    [request] = receiver.received("/hook?x=1")
    assert request["headers"]["Host"] == f"rebind.test:{port}" and request["headers"]["X-Probe"] == "1"
    tls = pinned_request(check_url("https://public.test/a", resolver=lambda host, port: ["93.184.216.34"]), "POST", {}, b"")
    assert str(tls.url) == "https://93.184.216.34/a" and tls.extensions == {"sni_hostname": "public.test"} and tls.headers["Host"] == "public.test"
