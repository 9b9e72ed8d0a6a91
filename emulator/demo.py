"""`make demo`: the main job against a local Azure.

Starts Azurite and the ARM emulator on the seed article's scenario, then runs the `hairpin` CLI
as a separate process exactly as an operator would against real Azure (`--subscription ID`,
DefaultAzureCredential, which here finds the emulator's managed-identity endpoint):
audit -> plan -> apply (the demo gives the approval itself) -> verify -> audit again.

As root, the Linux variant runs with guests in network namespaces, so the hairpin failure and
the fix are measured with real TCP connects; otherwise the Windows scenario runs with a
modelled guest, and the demo says so.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from emulator import azurite
from emulator.server import Emulator

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
OUT = ROOT / "out"


def _banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def _guest_for_this_machine(modelled: bool):
    """Network-namespace guests as root (real connects), else the modelled guest."""
    from emulator.guests.fabric import netns_available, netns_unavailable_reason

    if not modelled and netns_available():
        from emulator.guests.netns import NetnsGuest

        scenario = SCENARIOS / "default-linux.json"
        return scenario, NetnsGuest(json.loads(scenario.read_text())), \
            "Linux guests in network namespaces (real TCP connects)"
    from emulator.guests.modelled import ModelledGuest

    if not modelled:
        print(f"network namespaces unavailable ({netns_unavailable_reason()}): using the "
              "Windows scenario with a modelled guest; run as root to see the Linux fix "
              "measured for real")
    return SCENARIOS / "default.json", ModelledGuest(), "modelled Windows guests"


def _hairpin(env: dict, *args: str, check_codes=(0, 1)) -> subprocess.CompletedProcess:
    print(f"$ hairpin {' '.join(args)}", flush=True)
    proc = subprocess.run([sys.executable, "-m", "shared.cli", *args], env=env, cwd=ROOT,
                          text=True, capture_output=True)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    if proc.returncode not in check_codes:
        raise SystemExit(f"demo: `hairpin {args[0]}` exited {proc.returncode}")
    return proc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulator.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modelled", action="store_true",
                        help="Windows scenario with the modelled guest, even as root")
    args = parser.parse_args(argv)
    scenario, guest, guest_text = _guest_for_this_machine(args.modelled)
    OUT.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="hairpin-demo-"))
    storage_proc, storage = azurite.start(work)
    try:
        emu = Emulator(scenario, guest=guest, lro_retry_after=1)
        attach = getattr(guest, "attach", None)
        if attach:
            attach(emu)  # guest health follows the emulator's power state and mirrors
        with emu:
            env = {**os.environ, **emu.env(),
                   "AzureWebJobsStorage": storage.connection_string,
                   "HAIRPIN_SUBSCRIPTIONS": emu.subscription_id,
                   "HAIRPIN_MODE": "apply",
                   "PYTHONPATH": str(ROOT)}
            env.pop("AZURE_CLIENT_ID", None)
            sub = emu.subscription_id
            print(f"Local Azure: ARM emulator {emu.base_url}, Azurite {storage.blob_endpoint}, "
                  f"scenario {scenario.name}, {guest_text}")
            run_demo(env, sub, emu)
    finally:
        if hasattr(guest, "close"):
            guest.close()
        azurite.stop(storage_proc)
        shutil.rmtree(work, ignore_errors=True)
    return 0


def run_demo(env: dict, sub: str, emu: Emulator) -> None:
    vm1 = (f"/subscriptions/{sub}/resourceGroups/rg-healthshare/providers/"
           "Microsoft.Compute/virtualMachines/hs-vm1")

    _banner("1. Audit: which VMs will fail to reach which ILB frontends")
    _hairpin(env, "audit", "--subscription", sub, "--html", str(OUT / "audit.html"))

    _banner("2. Measure the hairpin from inside hs-vm1 before the fix")
    _hairpin(env, "verify", "--subscription", sub, "--vm", vm1)

    _banner("   ...and from hs-vm2, which serves nothing now (its calls succeed)")
    _hairpin(env, "verify", "--subscription", sub, "--vm", vm1.replace("hs-vm1", "hs-vm2"))

    _banner("3. Plan the fix (nothing is written)")
    plan = json.loads(_hairpin(env, "plan", "--subscription", sub, "--vm", vm1,
                               "--format", "json").stdout)
    _hairpin(env, "plan", "--subscription", sub, "--vm", vm1)

    _banner(f"4. Apply, approving exactly plan {plan['plan']['hash'][:12]}")
    _hairpin(env, "apply", "--subscription", sub, "--vm", vm1, "--approve", plan["plan"]["hash"],
             check_codes=(0,))

    _banner("5. Measure again from inside hs-vm1 (the primaries moved while it was down)")
    _hairpin(env, "verify", "--subscription", sub, "--vm", vm1, check_codes=(0,))

    _banner("6. The DBA fails the mirrors back to hs-vm1: its own calls now come back to it")
    emu.fail_over(vm1)
    _hairpin(env, "verify", "--subscription", sub, "--vm", vm1, check_codes=(0,))

    _banner("7. Audit again")
    _hairpin(env, "audit", "--subscription", sub, check_codes=(0,))

    _banner("8. Journal")
    _hairpin(env, "history", "--subscription", sub, "--vm", vm1, check_codes=(0,))
    print(f"\nARM requests served: {len(emu.requests)}, writes: {len(emu.requests.writes())}")


if __name__ == "__main__":
    sys.exit(main())
