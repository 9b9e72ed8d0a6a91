"""`hairpin plan | apply | verify | rollback | history`: remediation (shared.services.remediation).

Settings come from HAIRPIN_* environment variables (Settings.from_env); the subscription from
--subscription or AZURE_SUBSCRIPTION_ID; storage (journal, locks) from
HAIRPIN_STORAGE_CONNECTION / AzureWebJobsStorage (Azurite locally).
"""

from __future__ import annotations

import argparse
import json
import sys

from shared.cli.common import UsageError, cli_trigger, context_from_env

EXIT_OK, EXIT_NOT_DONE = 0, 1


def _target(args) -> str:
    finding = getattr(args, "finding", None)
    if bool(finding) == bool(args.vm):
        raise UsageError("give a finding ID or --vm VM_RESOURCE_ID (exactly one)")
    return args.vm or finding


def _usage(exc) -> Exception:
    return UsageError(str(exc))


def _subscription(args) -> str | None:
    """An explicit --subscription; else the shared rule (shared.core.scope) decides."""
    return args.subscription or None


def _print_outcome(out, fmt: str) -> int:
    if fmt == "json":
        print(json.dumps(out.as_dict(), indent=2, default=str))
    else:
        print(f"status: {out.status}  (operation {out.operation_id}, plan {out.plan_hash}, "
              f"ARM writes {out.arm_writes})")
        for r in out.resumed:
            for reason in r.get("reasons", []):
                print(f"  resumed: {reason}")
        for reason in out.reasons:
            print(f"  - {reason}")
        for v in out.vms:
            print(f"  {v.vm_name}: {v.status}")
            for s in v.steps:
                print(f"     {s['step']}: {s['result']}")
            for n in v.verification:
                answered = ", ".join(f"{name} {count}" for name, count in
                                     sorted((n.get("backends") or {}).items()))
                print(f"     verify {n['vip']}:{n['port']}: {n['ok']}/{n['total']} connects"
                      + (f" (answered by {answered})" if answered else ""))
            for reason in v.reasons:
                print(f"     ! {reason}")
        if out.status == "pending" and out.resumable:
            print("  the run stopped cleanly; run the same command again to continue")
    return EXIT_OK if out.status in ("applied", "unchanged") else EXIT_NOT_DONE


def cmd_plan(args) -> int:
    from shared.services import remediation

    try:
        pr = remediation.plan_for_target(context_from_env(), _target(args), _subscription(args))
    except remediation.TargetError as exc:
        raise _usage(exc) from None
    if args.format == "json":
        print(json.dumps(pr.as_dict(), indent=2, default=str))
    else:
        sys.stdout.write(pr.plan.to_text())
    return EXIT_OK


def cmd_apply(args) -> int:
    from shared.services import remediation

    try:
        out = remediation.apply(context_from_env(), _target(args), cli_trigger(),
                                approval=args.approve, subscription_id=_subscription(args))
    except remediation.TargetError as exc:
        raise _usage(exc) from None
    if out.status == "pending" and out.plan and not args.approve and args.format == "text":
        print(f"review the plan with `hairpin plan`, then: --approve {out.plan_hash}")
    return _print_outcome(out, args.format)


def cmd_verify(args) -> int:
    from shared.services import remediation

    try:
        out = remediation.verify(context_from_env(), args.vm, cli_trigger())
    except remediation.TargetError as exc:
        raise _usage(exc) from None
    return _print_outcome(out, args.format)


def cmd_rollback(args) -> int:
    from shared.services import remediation

    try:
        out = remediation.rollback(context_from_env(), args.vm, cli_trigger(),
                                   approval=args.approve)
    except remediation.TargetError as exc:
        raise _usage(exc) from None
    if args.format == "text" and out.plan and out.status == "pending":
        for step in out.plan.get("steps", []):
            flag = "  [DEALLOCATES THE VM]" if step.get("deallocates") else ""
            print(f"  plan {step['index']}. {step['kind']}: {step['description']}{flag}")
        print(f"  approve with: --approve {out.plan_hash}")
    return _print_outcome(out, args.format)


def cmd_history(args) -> int:
    from shared.services import remediation

    try:
        entries = remediation.history(context_from_env(), args.vm, args.limit)
    except remediation.TargetError as exc:
        raise _usage(exc) from None
    if args.format == "json":
        print(json.dumps(entries, indent=2, default=str))
        return EXIT_OK
    if not entries:
        print("no journal entries for this VM")
    for e in entries:
        who = e["trigger"]["kind"] + (f"/{e['trigger']['principal']}"
                                      if e["trigger"].get("principal") else "")
        if e["trigger"].get("principal_name"):
            who += f" ({e['trigger']['principal_name']})"
        line = (f"{e['timestamp']}  {e['action']:<15} {e['result']:<10} {who:<20} "
                f"op {e['operation_id'][:12]}  plan {(e['plan_hash'] or '-')[:12]}")
        print(line)
        if e.get("error"):
            print(f"    {e['error'][:300]}")
    return EXIT_OK


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--subscription", metavar="GUID",
                   help="subscription of a finding ID (default: HAIRPIN_SUBSCRIPTIONS, then "
                        "AZURE_SUBSCRIPTION_ID); a VM ID names its own")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format")


def register(subparsers) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser(
        "plan", formatter_class=fmt, help="show the remediation plan for a finding or a VM",
        description="Read the live estate and print the ordered remediation plan: which VMs "
        "(every VM with a high or medium finding in the affected pools, those serving nothing "
        "first), what each step changes, which VMs are deallocated and which frontends fail "
        "over. Writes nothing. The plan hash is what `hairpin apply --approve` takes.",
        epilog="examples:\n  hairpin plan hp-fa5d73dc2cd7e76d4ef3\n"
               "  hairpin plan --vm /subscriptions/.../virtualMachines/hs-vm1 --format json")
    p.add_argument("finding", nargs="?", metavar="FINDING", help="finding ID (hp-...)")
    p.add_argument("--vm", metavar="ID", help="VM resource ID instead of a finding")
    _common(p)
    p.set_defaults(handler=cmd_plan)

    p = subparsers.add_parser(
        "apply", formatter_class=fmt, help="apply the plan (needs HAIRPIN_MODE=apply)",
        description="Run the plan under the guard: HAIRPIN_MODE must be apply; a plan that "
        "deallocates a VM needs --approve with the exact plan hash (a changed estate "
        "invalidates it); a VM is never deallocated while a pool peer is not running. VMs "
        "this project left deallocated are started first. Every write is journaled.",
        epilog="example:\n  hairpin apply --vm /subscriptions/.../hs-vm1 --approve <hash from "
               "hairpin plan>")
    p.add_argument("finding", nargs="?", metavar="FINDING", help="finding ID (hp-...)")
    p.add_argument("--vm", metavar="ID", help="VM resource ID instead of a finding")
    p.add_argument("--approve", metavar="HASH", help="plan hash shown by `hairpin plan`")
    _common(p)
    p.set_defaults(handler=cmd_apply)

    p = subparsers.add_parser(
        "verify", help="measure from inside the VM: N TCP connects to each at-risk VIP",
        description="Run the verification script through Run Command (HAIRPIN_VERIFY_CONNECTS "
        "connects per VIP:port, a new source port each) and print successes per VIP. Run "
        "Command is an ARM write, so this needs HAIRPIN_MODE=apply; it changes nothing in "
        "the guest and never deallocates. On a VM without the fix it measures the hairpin "
        "itself. Exit status 1 when any VIP is below 100%.")
    p.add_argument("--vm", metavar="ID", required=True, help="VM resource ID")
    _common(p)
    p.set_defaults(handler=cmd_verify)

    p = subparsers.add_parser(
        "rollback", formatter_class=fmt, help="remove the managed NIC and routes from a VM",
        description="Remove the guest routes (cleanup script), detach and delete the managed "
        "secondary NIC (only a NIC tagged <managed tag>=true: never one this project did not "
        "create), under the same guard as apply. Without --approve it shows the rollback plan "
        "and its hash.")
    p.add_argument("--vm", metavar="ID", required=True, help="VM resource ID")
    p.add_argument("--approve", metavar="HASH", help="rollback plan hash")
    _common(p)
    p.set_defaults(handler=cmd_rollback)

    p = subparsers.add_parser(
        "history", help="show the journal of a VM (newest first)",
        description="Every write remediation made on the VM: trigger, plan hash, step, result, "
        "before/after (with --format json).")
    p.add_argument("--vm", metavar="ID", required=True, help="VM resource ID")
    p.add_argument("--limit", type=int, default=50, help="entries to show (default 50)")
    _common(p)
    p.set_defaults(handler=cmd_history)
