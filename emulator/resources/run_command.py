"""Run Command (`POST .../virtualMachines/{vm}/runCommand`): validated, then run by the guest
model on a worker thread; the result as the VM agent reports it."""

from __future__ import annotations

import threading
import time

from emulator.errors import bad_request, conflict, not_found
from emulator.resources.power import agent_ready
from emulator.resources.vms import os_type, view
from emulator.state import EmulatorHost, lower

OUTPUT_LIMIT = 4096  # Run Command returns only the last 4,096 bytes of each stream


LINUX_COMMANDS = {"RunShellScript", "ifconfig"}


WINDOWS_COMMANDS = {
    "RunPowerShellScript",
    "ipconfig",
    "EnableRemotePS",
    "RDPSettings",
    "ResetRDPCert",
    "SetRDPPort",
    "DisableNLA",
    "EnableAdminAccount",
    "DisableWindowsUpdate",
    "EnableWindowsUpdate",
    "IMDSCertCheck",
}


# ---------------------------------------------------------------------------- Run Command
def _tail(text: str) -> str:
    data = text.encode("utf-8", "replace")
    return data[-OUTPUT_LIMIT:].decode("utf-8", "ignore")


def run_command_result(os_name: str, code: int, out: str, err: str) -> dict:
    """The RunCommandResult body as the VM agent reports it. The script's exit status `code`
    shows in neither OS's answer: only the script's own output tells what happened."""
    out, err = _tail(out), _tail(err)
    if os_name.lower() == "windows":
        return {
            "value": [
                {
                    "code": "ComponentStatus/StdOut/succeeded",
                    "level": "Info",
                    "displayStatus": "Provisioning succeeded",
                    "message": out,
                },
                {
                    "code": "ComponentStatus/StdErr/succeeded",
                    "level": "Info",
                    "displayStatus": "Provisioning succeeded",
                    "message": err,
                },
            ]
        }
    # Linux (Azure/run-command-extension-linux main/cmds.go `enable`, main/main.go): the
    # extension always reports success, "Enable succeeded: " + "\n[stdout]\n...\n[stderr]\n...",
    # whatever the script's exit status, which it does not report.
    return {
        "value": [
            {
                "code": "ProvisioningState/succeeded",
                "level": "Info",
                "displayStatus": "Provisioning succeeded",
                "message": f"Enable succeeded: \n[stdout]\n{out}\n[stderr]\n{err}",
            }
        ]
    }


def start_run_command(emu: EmulatorHost, vm_id: str, body: dict, op) -> None:
    """Validate, then run the script on a worker thread that fills op.result."""
    vm = emu.store.get(vm_id)
    if vm is None:
        raise not_found(vm_id)
    command_id = body.get("commandId") or ""
    osn = os_type(vm)
    allowed = WINDOWS_COMMANDS if osn.lower() == "windows" else LINUX_COMMANDS
    if command_id not in allowed:
        raise bad_request(
            "InvalidParameter",
            f"The command '{command_id}' is not available for {osn} virtual machines.",
        )
    if emu.power_state(vm_id) != "running":
        raise conflict(
            "OperationNotAllowed", "The operation requires the VM to be running (or set to run)."
        )
    key = lower(vm_id)
    with emu.busy_lock:
        if key in emu.run_busy:
            raise conflict(
                "Conflict",
                "Run command extension execution is in progress. Please wait for "
                "completion before invoking a run command.",
            )
        emu.run_busy.add(key)
    script = [str(s) for s in body.get("script") or []]
    params = list(body.get("parameters") or [])
    vm_view = view(emu, vm, expand=True)
    ready = agent_ready(emu, vm_id)

    def work():
        try:
            if emu.run_command_seconds:
                time.sleep(emu.run_command_seconds)  # Run Command is never instant
            if not ready:
                op.error = {
                    "code": "VMAgentStatusCommunicationError",
                    "message": f"VM '{vm['name']}' has not reported status for VM agent or "
                    "extensions. Please verify the VM has a running VM agent, and can establish "
                    "outbound connections to Azure storage.",
                }
                return
            code, out, err = emu.guest.run_command(vm_view, command_id, script, params)
            op.result = run_command_result(osn, int(code), out or "", err or "")
        except Exception as exc:  # the guest model broke: report like an agent failure
            op.error = {"code": "VMAgentStatusCommunicationError", "message": str(exc)}
        finally:
            with emu.busy_lock:
                emu.run_busy.discard(key)

    op.worker = threading.Thread(target=work, name=f"runcmd-{vm['name']}", daemon=True)
    op.worker.start()
