"""The outage this rig was built for, as a regression test on a real booted Debian 12 system
(tests/realos/, docs/real-os.md); the full matrix is ``python -m tests.realos.matrix``.

Minutes under TCG, so only with ``HAIRPIN_REALOS=1`` (``make test-os`` runs both). Needs root,
qemu-system-x86, qemu-utils, debootstrap and dnsmasq-base
(``scripts/install-system-packages.sh --realos``).
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.realos.matrix import problems_of
from tests.realos.rig import Rig, image
from tests.realos.stacks import Stack

TOOLS = ("qemu-system-x86_64", "qemu-img", "debootstrap", "dnsmasq", "mkfs.ext4", "nft")
missing = [t for t in TOOLS if shutil.which(t) is None]
if os.environ.get("HAIRPIN_REALOS") != "1":
    pytest.skip("real-OS tests run with HAIRPIN_REALOS=1 (make test-os)", allow_module_level=True)
if os.geteuid() != 0 or missing:
    pytest.skip(f"real-OS tests need root and {', '.join(missing) or 'nothing more'}",
                allow_module_level=True)

pytestmark = pytest.mark.realos


@pytest.fixture(scope="module")
def img():
    return image()


def test_networkd_restart_keeps_the_vm_reachable(img):
    """Today's outage: after the fix, `systemctl restart systemd-networkd` (what a systemd
    package upgrade does) deleted the moved local rule, and the VM lost local delivery: the
    outside client and 127.0.0.1 went to 0/20."""
    with Rig(Stack.NETWORKD, img) as rig:
        assert rig.script("apply")[0] == 0
        assert problems_of(rig.measure(), fixed=True) == []  # the product's verify counts too
        rc, _, err = rig.run("systemctl restart systemd-networkd")
        assert rc == 0, err
        rig.settle()
        assert problems_of(rig.measure(), fixed=True) == []

