"""Adapter: the writes remediation makes, each through the real SDK (`begin_*` LROs + `.result()`).

- managed NIC: create only after re-reading that no NIC of that name exists (a managed one is
  "created meanwhile", anyone else's is never touched): If-None-Match: * is still sent, but
  NetworkInterfaces_CreateOrUpdate declares no such header, so nothing relies on it; read;
- attach/detach: VM PATCH of the NIC list only, with If-Match on the VM's etag (NIC changes
  need the VM deallocated; a PUT would re-check every linked resource: docs/azure-facts.md,
  "NIC changes");
- deallocate, start;
- Run Command: one script at a time per VM (409 Conflict -> wait and retry with backoff within
  the budget), VM not running / agent not ready -> `RunCommandPending` (a clear pending state),
  output parsed with `guest_scripts.parse_run_command_output`;
- delete NIC: only a NIC tagged `<managed_tag>=true`, re-read just before, If-Match its etag.

The clients count every write they send (`shared.azure.clients.counting_writes`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from shared.azure.clients import AzureClients
from shared.core import arm_ids
from shared.core import guest as guest_scripts
from shared.core.arm_docs import is_managed
from shared.core.vocab import PowerState

log = logging.getLogger(__name__)

__all__ = ["ArmActions", "ActionError", "NotManaged", "EtagConflict", "RunCommandPending",
           "RunCommandResult", "error_code", "primary_flags"]


class ActionError(Exception):
    """A write could not be made; `code` is ARM's error code when there is one."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class NotManaged(ActionError):
    """Refused: the NIC is not tagged as created by this project."""


class EtagConflict(ActionError):
    """The resource changed between our read and our write (412)."""


class RunCommandPending(ActionError):
    """Run Command cannot run now (VM not running, agent not ready, timeout): try later."""


@dataclass
class RunCommandResult:
    ok: bool
    result: dict  # the script's JSON result line
    raw: list[dict] = field(default_factory=list)


def error_code(exc: BaseException) -> str | None:
    err = getattr(exc, "error", None)
    code = getattr(err, "code", None)
    if code:
        return str(code)
    text = str(exc)
    for known in ("Conflict", "OperationNotAllowed", "VMAgentStatusCommunicationError",
                  "PreconditionFailed", "PrivateIPAddressInUse"):
        if known in text:
            return known
    return None


def _split(resource_id: str) -> tuple[str, str]:
    parsed = arm_ids.parse(resource_id)
    return parsed.resource_group, parsed.name


def _plain(model: Any) -> dict:
    if model is None:
        return {}
    if isinstance(model, dict):
        return model
    return model.as_dict()


def primary_flags(refs: list[dict]) -> list[bool]:
    """`primary` for every NIC reference of a VM PATCH: with several NICs ARM answers 400
    NetworkInterfaceMustHavePrimaryPropertySet when one is sent without it. The one flagged
    stays primary; none flagged (a one-NIC VM reads without the flag) makes the first one."""
    flagged = [bool((r.get("properties") or {}).get("primary")) for r in refs]
    if any(flagged):
        first = flagged.index(True)
        return [i == first for i in range(len(refs))]
    return [i == 0 for i in range(len(refs))]


class ArmActions:
    """Writes (and the few reads they need) for one subscription."""

    def __init__(self, clients: AzureClients, *, managed_tag: str = "hairpin-managed",
                 deadline: float | None = None, run_command_timeout: float = 900,
                 conflict_backoff: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.clients = clients
        self.managed_tag = managed_tag
        self.deadline = deadline
        self.run_command_timeout = run_command_timeout
        self.conflict_backoff = conflict_backoff
        self._clock = clock
        self._sleep = sleep


    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - self._clock()

    # ------------------------------------------------------------------ reads
    def get_vm(self, vm_id: str) -> dict | None:
        rg, name = _split(vm_id)
        try:
            return _plain(self.clients.compute.virtual_machines.get(rg, name,
                                                                   expand="instanceView"))
        except ResourceNotFoundError:
            return None

    def permissions(self, resource_id: str) -> list[dict]:
        """The caller's effective permissions on a resource (`Permissions - List For
        Resource`): [{"actions": [...], "notActions": [...]}, ...]."""
        rid = arm_ids.parse(resource_id)
        pages = self.clients.authorization.permissions.list_for_resource(
            rid.resource_group, rid.provider, "", rid.types[0], rid.names[0])
        return [{"actions": list(p.actions or []), "notActions": list(p.not_actions or [])}
                for p in pages]

    def get_nic(self, nic_id: str) -> dict | None:
        rg, name = _split(nic_id)
        try:
            return _plain(self.clients.network.network_interfaces.get(rg, name))
        except ResourceNotFoundError:
            return None

    @staticmethod
    def power_state(vm: dict | None) -> PowerState | None:
        for st in ((vm or {}).get("properties") or {}).get("instanceView", {}).get("statuses", []):
            code = st.get("code") or ""
            if code.lower().startswith("powerstate/"):
                return PowerState.from_code(code)
        return None

    @staticmethod
    def agent_ready(vm: dict | None) -> bool | None:
        view = ((vm or {}).get("properties") or {}).get("instanceView") or {}
        statuses = (view.get("vmAgent") or {}).get("statuses") or []
        if not statuses:
            return None
        return (statuses[0].get("displayStatus") or "").lower() == "ready"

    @staticmethod
    def nic_ids(vm: dict | None) -> list[str]:
        refs = (((vm or {}).get("properties") or {}).get("networkProfile") or {}).get(
            "networkInterfaces") or []
        return [r["id"] for r in refs if r.get("id")]

    # ------------------------------------------------------------------ NIC
    def create_nic(self, nic_id: str, body: dict) -> dict:
        """Create the managed NIC; never overwrites an existing one. The NIC is re-read first:
        Microsoft.Network does not document If-None-Match on this PUT (docs/azure-contract.md),
        so the header alone is no guarantee."""
        rg, name = _split(nic_id)
        existing = self.get_nic(nic_id)
        if existing is not None and not is_managed(existing, self.managed_tag):
            raise NotManaged(f"a NIC named {name} exists and is not tagged "
                             f"{self.managed_tag}=true: never overwritten")
        if existing is not None:
            raise EtagConflict(f"NIC {name} was created meanwhile by another run",
                               "PreconditionFailed")
        try:
            poller = self.clients.network.network_interfaces.begin_create_or_update(
                rg, name, body, headers={"If-None-Match": "*"})
            return _plain(poller.result())
        except HttpResponseError as exc:
            if exc.status_code == 412:
                raise EtagConflict(f"NIC {name} was created meanwhile by someone else",
                                   "PreconditionFailed") from exc
            raise

    def delete_nic(self, nic_id: str) -> bool:
        """Delete a NIC this project created. False when it does not exist."""
        nic = self.get_nic(nic_id)
        if nic is None:
            return False
        if not is_managed(nic, self.managed_tag):
            raise NotManaged(f"NIC {nic.get('name')} is not tagged {self.managed_tag}=true: "
                             "this project did not create it and never deletes it")
        if ((nic.get("properties") or {}).get("virtualMachine") or {}).get("id"):
            raise ActionError(f"NIC {nic.get('name')} is still attached to a VM", "NicInUse")
        rg, name = _split(nic_id)
        headers = {"If-Match": nic["etag"]} if nic.get("etag") else {}
        try:
            self.clients.network.network_interfaces.begin_delete(rg, name,
                                                                 headers=headers).result()
        except HttpResponseError as exc:
            if exc.status_code == 412:
                raise EtagConflict(f"NIC {name} changed before delete", "PreconditionFailed") \
                    from exc
            raise
        return True

    # ------------------------------------------------------------------ VM NIC list
    def _patch_nics(self, vm_id: str, change: Callable[[list[dict]], list[dict] | None]) -> dict:
        """PATCH the VM with only its NIC list, If-Match its etag (re-read on 412, twice).

        Not a PUT: ARM re-checks every linked resource a VM PUT body carries (identities,
        images, disks...), which the least-privilege role may not reach; a PATCH is checked for
        what it sends (docs/azure-facts.md, "NIC changes")."""
        from azure.mgmt.compute.models import (
            NetworkInterfaceReference,
            NetworkProfile,
            VirtualMachineUpdate,
        )

        rg, name = _split(vm_id)
        for attempt in range(3):
            doc = _plain(self.clients.compute.virtual_machines.get(rg, name))
            refs = list(((doc.get("properties") or {}).get("networkProfile") or {}).get(
                "networkInterfaces") or [])
            new_refs = change([dict(r) for r in refs])
            if new_refs is None:
                return doc  # already as wanted
            update = VirtualMachineUpdate(network_profile=NetworkProfile(network_interfaces=[
                NetworkInterfaceReference(
                    id=r["id"], primary=primary,
                    delete_option=(r.get("properties") or {}).get("deleteOption"))
                for r, primary in zip(new_refs, primary_flags(new_refs), strict=True)]))
            condition = {"etag": doc["etag"], "match_condition": MatchConditions.IfNotModified} \
                if doc.get("etag") else {}
            try:
                poller = self.clients.compute.virtual_machines.begin_update(
                    rg, name, update, **condition)
                return _plain(poller.result())
            except HttpResponseError as exc:
                if exc.status_code == 412 and attempt < 2:
                    log.info("VM %s changed under us (412); re-reading", name)
                    continue
                if exc.status_code == 412:
                    raise EtagConflict(f"VM {name} keeps changing (412)",
                                       "PreconditionFailed") from exc
                raise
        raise AssertionError("unreachable")

    def attach_nic(self, vm_id: str, nic_id: str) -> dict:
        """Add the NIC as non-primary (the VM must be deallocated)."""
        key = arm_ids.normalize(nic_id)

        def change(refs: list[dict]) -> list[dict] | None:
            if any(arm_ids.normalize(r.get("id", "")) == key for r in refs):
                return None
            for r in refs:
                props = dict(r.get("properties") or {})
                if len(refs) == 1 and "primary" not in props:
                    props["primary"] = True
                r["properties"] = props
            # deleteOption Delete: deleting the VM removes the managed NIC with it.
            return refs + [{"id": nic_id,
                            "properties": {"primary": False, "deleteOption": "Delete"}}]

        return self._patch_nics(vm_id, change)

    def detach_nic(self, vm_id: str, nic_id: str) -> dict:
        key = arm_ids.normalize(nic_id)

        def change(refs: list[dict]) -> list[dict] | None:
            kept = [r for r in refs if arm_ids.normalize(r.get("id", "")) != key]
            if len(kept) == len(refs):
                return None
            gone = [r for r in refs if arm_ids.normalize(r.get("id", "")) == key]
            if not kept or any((r.get("properties") or {}).get("primary") for r in gone):
                raise NotManaged(f"{arm_ids.name_of(nic_id)} is the primary NIC of "
                                 f"{arm_ids.name_of(vm_id)}: never detached")
            return kept

        return self._patch_nics(vm_id, change)

    # ------------------------------------------------------------------ power
    def deallocate(self, vm_id: str) -> None:
        rg, name = _split(vm_id)
        self.clients.compute.virtual_machines.begin_deallocate(rg, name).result()

    def start(self, vm_id: str) -> None:
        rg, name = _split(vm_id)
        self.clients.compute.virtual_machines.begin_start(rg, name).result()

    def wait_agent_ready(self, vm_id: str, *, timeout: float, interval: float,
                         margin: float = 0.0) -> dict | None:
        """Read the VM until its agent reports Ready (or reports nothing to wait for), at most
        `timeout` seconds and never past the deadline less `margin`; the last read."""
        started = self._clock()
        while True:
            vm = self.get_vm(vm_id)
            if vm is None or self.agent_ready(vm) is not False:
                return vm
            left = timeout - (self._clock() - started)
            remaining = self.remaining()
            if remaining is not None:
                left = min(left, remaining - margin)
            if left < interval:
                return vm
            self._sleep(interval)

    # ------------------------------------------------------------------ Run Command
    def run_command(self, vm_id: str, command_id: str, script: list[str], *,
                    vm: dict | None = None) -> RunCommandResult:
        """Run a script and parse its JSON result line. Raises RunCommandPending when the VM
        cannot run it now, ActionError when the output carries no result."""
        rg, name = _split(vm_id)
        vm = vm if vm is not None else self.get_vm(vm_id)
        if vm is None:
            raise ActionError(f"VM {name} not found", "ResourceNotFound")
        if self.power_state(vm) != PowerState.RUNNING:
            raise RunCommandPending(f"VM {name} is {self.power_state(vm) or 'not running'}: "
                                    "guest commands wait until it runs", "VmNotRunning")
        if self.agent_ready(vm) is False:
            raise RunCommandPending(f"the VM agent on {name} is not ready: guest commands wait "
                                    "until it reports Ready", "VmAgentNotReady")
        body = {"commandId": command_id, "script": script}
        started = self._clock()
        wait = self.conflict_backoff
        while True:
            try:
                poller = self.clients.compute.virtual_machines.begin_run_command(rg, name, body)
                result = poller.result(timeout=self.run_command_timeout)
                if not poller.done():
                    raise RunCommandPending(f"Run Command on {name} did not finish within "
                                            f"{self.run_command_timeout:.0f} s", "Timeout")
                break
            except HttpResponseError as exc:
                code = error_code(exc)
                if exc.status_code == 409 and code == "OperationNotAllowed":
                    raise RunCommandPending(f"VM {name} is not running: guest commands wait",
                                            "VmNotRunning") from exc
                if code == "VMAgentStatusCommunicationError":
                    raise RunCommandPending(f"the VM agent on {name} did not answer: "
                                            f"{exc.message}", code) from exc
                if exc.status_code == 409:
                    spent = self._clock() - started
                    remaining = self.remaining()
                    budget = self.run_command_timeout - spent
                    if remaining is not None:
                        budget = min(budget, remaining)
                    if wait > budget:
                        raise RunCommandPending(
                            f"another Run Command is still running on {name}; gave up after "
                            f"{spent:.0f} s (budget)", "Conflict") from exc
                    log.info("Run Command busy on %s; retrying in %.1f s", name, wait)
                    self._sleep(wait)
                    wait = min(wait * 2, 30)
                    continue
                raise
        values = [_plain(v) for v in (getattr(result, "value", None) or [])]
        try:
            parsed = guest_scripts.parse_run_command_output(values)
        except guest_scripts.RunCommandOutputError as exc:
            tail = " ".join(str(v.get("message", ""))[-300:] for v in values)
            raise ActionError(f"Run Command on {name} returned no result line: {tail}",
                              "NoResult") from exc
        ok = parsed.get("result") != "error" and parsed.get("ok", True) is not False
        return RunCommandResult(ok, parsed, values)
