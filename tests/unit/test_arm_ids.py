import pytest

from shared.core import arm_ids
from shared.core.arm_ids import InvalidResourceId, InvalidResourceName

SUB = "00000000-0000-0000-0000-000000000001"
NIC = (
    f"/subscriptions/{SUB}/resourceGroups/rg-healthshare/providers/Microsoft.Network/"
    "networkInterfaces/hs-vm1-nic"
)
CFG = NIC + "/ipConfigurations/ipconfig1"


def test_parse_child_resource():
    rid = arm_ids.parse(CFG)
    assert rid.subscription == SUB
    assert rid.resource_group == "rg-healthshare"
    assert rid.provider == "Microsoft.Network"
    assert rid.types == ("networkInterfaces", "ipConfigurations")
    assert rid.names == ("hs-vm1-nic", "ipconfig1")
    assert rid.type == "Microsoft.Network/networkInterfaces/ipConfigurations"
    assert rid.name == "ipconfig1"
    assert rid.is_child
    assert str(rid.parent) == NIC
    assert str(rid.top_level) == NIC
    assert str(rid) == CFG


def test_parent_chain_up_to_subscription():
    rid = arm_ids.parse(NIC)
    group = rid.parent
    assert group.types == () and group.name == "rg-healthshare"
    assert str(group) == f"/subscriptions/{SUB}/resourceGroups/rg-healthshare"
    assert str(group.parent) == f"/subscriptions/{SUB}"
    assert group.parent.parent is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "subscriptions/x",
        "/subscriptions",
        "/subscriptions/x/resourceGroups",
        "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Network/loadBalancers",
        "/subscriptions/x/resourceGroups/rg/foo/bar",
        "/subscriptions/x//resourceGroups/rg",
        "/tenants/x",
    ],
)
def test_parse_rejects_non_ids(text):
    with pytest.raises(InvalidResourceId):
        arm_ids.parse(text)
    assert arm_ids.try_parse(text) is None


def test_try_parse_non_string():
    assert arm_ids.try_parse(None) is None
    assert arm_ids.try_parse(42) is None


def test_comparison_is_case_insensitive():
    upper = CFG.upper().replace("/SUBSCRIPTIONS/", "/subscriptions/")
    assert arm_ids.same(CFG, upper)
    assert arm_ids.same(CFG + "/", " " + CFG)
    assert arm_ids.normalize(CFG) == CFG.lower()
    assert not arm_ids.same(CFG, NIC)
    assert not arm_ids.same(None, CFG)
    assert arm_ids.parse(CFG).key == CFG.lower()


def test_is_type_case_insensitive():
    assert arm_ids.parse(NIC.lower()).is_type("Microsoft.Network/networkInterfaces")


def test_build_child_parent_and_name():
    built = arm_ids.build(
        SUB,
        "rg-healthshare",
        "Microsoft.Network",
        "networkInterfaces",
        "hs-vm1-nic",
        "ipConfigurations",
        "ipconfig1",
    )
    assert built == CFG
    assert arm_ids.child(NIC, "ipConfigurations", "ipconfig1") == CFG
    assert arm_ids.parent_id(CFG) == NIC
    assert arm_ids.name_of(CFG) == "ipconfig1"
    with pytest.raises(ValueError):
        arm_ids.build(SUB, "rg", "Microsoft.Network", "loadBalancers")


@pytest.mark.parametrize(
    "name,kind,ok",
    [
        ("hs-vm1", "vm", True),
        ("hs_vm.1", "vm", True),
        ("a" * 64, "vm", True),
        ("a" * 65, "vm", False),
        ("hs-vm1-hairpin-nic", "network", True),
        ("a" * 80, "network", True),
        ("a" * 81, "network", False),
        ("-leading", "network", False),
        ("trailing-", "network", False),
        ("trailing.", "network", False),
        ("end_", "network", True),
        ("x", "network", True),
        ("", "network", False),
        ("has space", "network", False),
        ("semi;colon", "vm", False),
        ("$(reboot)", "vm", False),
        ("quote'", "network", False),
        ("new\nline", "network", False),
        ("rg-(prod)", "resource_group", True),
        ("rg.", "resource_group", False),
        ("hairpin-remediation", "tag", True),
        ("bad tag", "tag", False),
    ],
)
def test_name_rules(name, kind, ok):
    assert arm_ids.is_valid_name(name, kind) is ok
    if ok:
        assert arm_ids.validate_name(name, kind) == name
    else:
        with pytest.raises(InvalidResourceName):
            arm_ids.validate_name(name, kind)


def test_name_kind_aliases_and_unknown_kind():
    assert arm_ids.is_valid_name("hs-vm1", "virtualMachines")
    assert not arm_ids.is_valid_name(None, "vm")
    with pytest.raises(ValueError):
        arm_ids.is_valid_name("x", "spaceship")


def test_subscription_id():
    assert arm_ids.is_subscription_id(SUB)
    assert not arm_ids.is_subscription_id("not-a-guid")
