import ipaddress

import pytest

from shared.core import ipam

A = ipaddress.ip_address


@pytest.mark.parametrize(
    "prefix,gateway",
    [
        ("10.0.1.0/24", "10.0.1.1"),
        ("10.1.0.128/25", "10.1.0.129"),
        ("10.0.0.0/16", "10.0.0.1"),
        ("192.168.5.8/29", "192.168.5.9"),
    ],
)
def test_gateway_is_first_usable(prefix, gateway):
    assert ipam.gateway(prefix) == A(gateway)


def test_reserved_addresses():
    assert ipam.reserved("10.0.1.0/24") == {
        A("10.0.1.0"),
        A("10.0.1.1"),
        A("10.0.1.2"),
        A("10.0.1.3"),
        A("10.0.1.255"),
    }
    assert ipam.reserved("10.1.0.128/25") == {
        A("10.1.0.128"),
        A("10.1.0.129"),
        A("10.1.0.130"),
        A("10.1.0.131"),
        A("10.1.0.255"),
    }
    assert ipam.usable_count("10.0.1.0/24") == 251
    assert ipam.usable_count("10.0.0.0/29") == 3


def test_too_small_and_bad_prefixes():
    with pytest.raises(ValueError):
        ipam.gateway("10.0.0.0/30")
    with pytest.raises(ValueError):
        ipam.parse_prefix("10.0.1.5/24")  # host bits set
    with pytest.raises(ValueError):
        ipam.parse_prefix("banana")


def test_is_usable():
    assert ipam.is_usable("10.0.1.4", "10.0.1.0/24")
    assert not ipam.is_usable("10.0.1.3", "10.0.1.0/24")
    assert not ipam.is_usable("10.0.1.255", "10.0.1.0/24")
    assert not ipam.is_usable("10.0.2.4", "10.0.1.0/24")


def test_lowest_free_skips_reserved_and_used():
    used = ["10.0.1.4", "10.0.1.5", None, "garbage"]
    assert ipam.choose_free_ip("10.0.1.0/24", used) == A("10.0.1.6")
    assert list(ipam.free_addresses("10.0.0.0/29", ["10.0.0.5"])) == [A("10.0.0.4"), A("10.0.0.6")]


def test_preferred_address_first_when_free():
    used = ["10.0.1.10", "10.0.1.20"]
    assert ipam.choose_free_ip("10.0.1.0/24", used, prefer=["10.0.1.11"]) == A("10.0.1.11")
    # taken, reserved, outside: fall through to the lowest free address
    assert ipam.choose_free_ip(
        "10.0.1.0/24", used + ["10.0.1.11"], prefer=["10.0.1.11", "10.0.1.255", "10.9.9.9", "x"]
    ) == A("10.0.1.4")


def test_subnet_full():
    net = "10.0.0.0/29"
    assert not ipam.is_full(net, ["10.0.0.4", "10.0.0.5"])
    assert ipam.is_full(net, ["10.0.0.4", "10.0.0.5", "10.0.0.6"])
    assert ipam.choose_free_ip(net, ["10.0.0.4", "10.0.0.5", "10.0.0.6"]) is None


def test_choice_is_deterministic_and_order_independent():
    used = [f"10.0.1.{i}" for i in range(4, 40, 3)]
    first = ipam.choose_free_ip("10.0.1.0/24", used)
    assert ipam.choose_free_ip("10.0.1.0/24", list(reversed(used))) == first


def test_large_subnet_is_lazy():
    free = ipam.free_addresses("10.0.0.0/8")
    assert next(free) == A("10.0.0.4")


def test_allocator_hands_out_distinct_addresses():
    alloc = ipam.AddressAllocator("10.0.1.0/24", ["10.0.1.4", A("10.0.1.5"), None, "junk"])
    assert alloc.take(prefer=["10.0.1.11"]) == A("10.0.1.11")
    assert alloc.take(prefer=["10.0.1.11"]) == A("10.0.1.6")  # preferred already handed out
    assert alloc.take() == A("10.0.1.7")
    assert alloc.take(prefer=[int(A("10.0.1.200"))]) == A("10.0.1.200")


def test_allocator_agrees_with_choose_free_ip_and_runs_out():
    used = ["10.0.0.4", "10.0.0.6"]
    alloc = ipam.AddressAllocator("10.0.0.0/29", used)
    assert alloc.take() == ipam.choose_free_ip("10.0.0.0/29", used) == A("10.0.0.5")
    assert alloc.take() is None
    with pytest.raises(ValueError):
        ipam.AddressAllocator("10.0.0.0/30")


@pytest.mark.parametrize(
    "value,expected",
    [
        ("10.0.1.10", int(A("10.0.1.10"))),
        ("255.255.255.255", 2**32 - 1),
        (A("10.0.0.1"), int(A("10.0.0.1"))),
        (7, 7),
        ("fd00::1", int(A("fd00::1"))),
        ("256.0.0.1", None),
        ("01.2.3.4", None),
        ("1.2.3", None),
        ("1..2.3", None),
        ("x", None),
        (None, None),
    ],
)
def test_address_value(value, expected):
    assert ipam.address_value(value) == expected
