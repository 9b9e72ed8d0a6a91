"""`hairpin guest-script`: print the guest route script so an operator can read it first."""

from __future__ import annotations

import argparse
import ipaddress

from shared.cli.common import UsageError
from shared.core import guest as gs

EPILOG = """\
example (the seed article's VM, two mirror VIPs, second instance on backend port 1973):
  hairpin guest-script --os linux --primary-ip 10.0.1.10 --secondary-ip 10.0.1.11 \\
      --gateway 10.0.1.1 --prefix-len 24 --mac 00-0D-3A-12-34-56 \\
      --vip 10.0.1.100 --port 1972 --vip 10.0.1.101 --port 1972:1973
"""


def _port_pair(text: str) -> tuple[int, int]:
    front, _, back = text.partition(":")
    try:
        pair = (int(front), int(back or front))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected FRONTEND[:BACKEND] ports, got {text!r}") from None
    return pair


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "guest-script", help="print the guest route script (apply, cleanup or verify)",
        description="Render the script that Run Command would run inside the guest, from "
        "validated values only. Each --vip takes the --port that follows it.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--os", required=True, choices=("linux", "windows"))
    p.add_argument("--vip", action="append", required=True, metavar="IP",
                   help="frontend IP of the internal load balancer (repeatable)")
    p.add_argument("--port", action="append", required=True, type=_port_pair,
                   metavar="FRONTEND[:BACKEND]",
                   help="rule ports for the preceding --vip; BACKEND defaults to FRONTEND")
    p.add_argument("--protocol", default="Tcp", choices=("Tcp", "Udp"),
                   help="rule protocol (default Tcp)")
    p.add_argument("--primary-ip", required=True, metavar="IP")
    p.add_argument("--secondary-ip", required=True, metavar="IP")
    p.add_argument("--gateway", required=True, metavar="IP", help="subnet gateway (x.x.x.1)")
    p.add_argument("--prefix-len", type=int, default=24, metavar="N",
                   help="subnet prefix length (default 24)")
    p.add_argument("--mac", required=True,
                   help="secondary NIC MAC, as ARM (00-0D-3A-12-34-56) or Linux writes it")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--cleanup", action="store_const", const="cleanup", dest="mode",
                      help="print the script that removes exactly what apply added")
    mode.add_argument("--verify", action="store_const", const="verify", dest="mode",
                      help="print the verification script (N TCP connects per VIP:port)")
    p.set_defaults(handler=run, mode="apply")


def run(args) -> int:
    if len(args.vip) != len(args.port):
        raise UsageError(f"{len(args.vip)} --vip but {len(args.port)} --port: give one --port "
                         "after each --vip")
    try:
        for ip in (args.primary_ip, args.secondary_ip, args.gateway, *args.vip):
            ipaddress.IPv4Address(ip)
        spec = gs.GuestRouteSpec(
            primary_ip=args.primary_ip, secondary_ip=args.secondary_ip,
            secondary_mac=gs.MacAddress.parse(args.mac), gateway=args.gateway,
            prefix_len=args.prefix_len,
            routes=tuple(gs.VipRoute(vip, gs.Protocol.parse(args.protocol), front, back)
                         for vip, (front, back) in zip(args.vip, args.port, strict=True)))
        script = gs.render(spec, args.os, args.mode)
    except (ValueError, gs.GuestScriptError) as exc:
        raise UsageError(str(exc)) from None
    print(script, end="" if script.endswith("\n") else "\n")
    return 0
