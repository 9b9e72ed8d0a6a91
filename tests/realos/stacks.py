"""What each network stack does to a guest, as the commands an operator or a package upgrade
would run. The matrix (``tests.realos.matrix``) runs every event of a stack and measures
after each one. Commands run as root in the guest through the guest agent."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Stack(enum.StrEnum):
    NETWORKD = "networkd"  # systemd-networkd rendered by netplan (Ubuntu on Azure)
    NETWORKMANAGER = "networkmanager"  # NetworkManager keyfiles (RHEL on Azure)
    IFUPDOWN = "ifupdown"  # /etc/network/interfaces + dhclient (classic Debian)


class EventKind(enum.StrEnum):
    GUEST = "guest"  # a command in the guest
    REBOOT = "reboot"  # systemctl reboot, same disk
    CARRIER = "carrier"  # the secondary NIC's carrier off for 5 s (QMP set_link)
    LEASE = "lease"  # the DHCP server changes the lease, then the guest renews


@dataclass(frozen=True)
class Event:
    name: str
    kind: EventKind
    command: str = ""  # for GUEST and LEASE (the renew)


RENEW = {
    Stack.NETWORKD: "networkctl renew eth0 eth1",
    # NetworkManager has no renew command: re-applying the device restarts its DHCP client.
    Stack.NETWORKMANAGER: "nmcli device reapply eth1",
    # A second dhclient on the same pid and lease files replaces the running one and renews.
    Stack.IFUPDOWN: ("dhclient -4 -v -pf /run/dhclient.eth1.pid "
                     "-lf /var/lib/dhcp/dhclient.eth1.leases -I -df "
                     "/var/lib/dhcp/dhclient6.eth1.leases eth1"),
}

EVENTS: dict[Stack, tuple[Event, ...]] = {
    Stack.NETWORKD: (
        Event("reboot", EventKind.REBOOT),
        Event("restart", EventKind.GUEST, "systemctl restart systemd-networkd"),
        Event("netplan-apply", EventKind.GUEST, "netplan apply"),
        Event("reconfigure", EventKind.GUEST, "networkctl reconfigure eth0 eth1"),
        Event("renew", EventKind.GUEST, RENEW[Stack.NETWORKD]),
        Event("changed-lease", EventKind.LEASE, RENEW[Stack.NETWORKD]),
        Event("carrier-flap", EventKind.CARRIER),
    ),
    Stack.NETWORKMANAGER: (
        Event("reboot", EventKind.REBOOT),
        Event("restart", EventKind.GUEST, "systemctl restart NetworkManager"),
        Event("re-activation", EventKind.GUEST, "nmcli device connect eth1"),
        Event("renew", EventKind.GUEST, RENEW[Stack.NETWORKMANAGER]),
        Event("changed-lease", EventKind.LEASE, RENEW[Stack.NETWORKMANAGER]),
        Event("carrier-flap", EventKind.CARRIER),
    ),
    Stack.IFUPDOWN: (
        Event("reboot", EventKind.REBOOT),
        Event("restart", EventKind.GUEST, "systemctl restart networking"),
        Event("ifdown-ifup", EventKind.GUEST, "ifdown eth1; ifup eth1"),
        Event("renew", EventKind.GUEST, RENEW[Stack.IFUPDOWN]),
        Event("changed-lease", EventKind.LEASE, RENEW[Stack.IFUPDOWN]),
        Event("carrier-flap", EventKind.CARRIER),
    ),
}

# The stack's own configuration, compared byte for byte before the fix and after cleanup.
STACK_FILES = ("/etc/netplan", "/etc/systemd/network", "/etc/systemd/system",
               "/etc/NetworkManager", "/etc/network", "/etc/networkd-dispatcher",
               "/etc/dhcp", "/etc/hairpin", "/etc/udev/rules.d")
