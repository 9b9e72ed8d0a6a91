"""Pure: what is out of line with the fix on a VM, and the one remediation call that reconciles
it. The drift sweep and the event service both decide through `assess`; they differ only in
the trigger's facts (`Trigger`): the sweep checks guests periodically, an event may say the
guest restarted.

The rule, VM by VM (`tests/unit/test_drift.py` runs both triggers through one table of cases):

drift
  managed_nic_detached            no managed NIC attached, and ours (named after the VM, in its
                                  resource group, tagged managed) lies unattached
  managed_nic_missing             no managed NIC, but the journal holds verified routes for it
  managed_nic_in_pool             a managed NIC was put into a backend pool
  route_missing_for_new_frontend  managed NIC, and an at-risk VIP has no verified route yet
  stale_routes                    verified routes to VIPs no frontend of the VM serves any more
  guest_restarted                 managed NIC, running, and the trigger says the guest started,
                                  restarted, was redeployed or reapplied
  new_finding                     no managed NIC, an at-risk finding, and no other drift
call
  apply                 no managed NIC and (a finding, or the NIC missing or detached);
                        or a managed NIC in a pool (the plan takes it out)
  ensure_guest_routes   managed NIC and (a new VIP, stale routes, or a restarted guest)
  verify                managed NIC, running, and the trigger checks guests (the sweep)
  (none)                otherwise; and never in audit mode (`unattended_call`)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from shared.core import arm_ids
from shared.core.risk import Evaluation, secondary_nic_name
from shared.core.topology import Topology, Vm
from shared.core.vocab import ACTIONABLE, DriftKind, Mode, RemediationCall
from shared.settings import Settings

__all__ = ["Trigger", "VmDrift", "assess", "assess_vm", "unattended_call", "drift_key"]


@dataclass(frozen=True)
class Trigger:
    """What the trigger knows that the estate does not say."""

    check_guests: bool = False  # verify managed, running VMs by Run Command (the sweep)
    restarted: frozenset[str] = frozenset()  # VM keys whose guest just (re)started (events)


@dataclass
class VmDrift:
    """What was found out of line on one VM and the call that reconciles it."""

    vm_id: str
    drift: list[DriftKind] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)  # actionable finding IDs
    call: RemediationCall | None = None
    managed_nic: bool = False
    running: bool = False
    pools: frozenset[str] = frozenset()  # remediation locks these: never two VMs of a pool
    os_type: str | None = None
    stale: list[str] = field(default_factory=list)  # VIPs of removed frontends with routes
    new_vips: list[str] = field(default_factory=list)  # at-risk VIPs without a verified route

    @property
    def key(self) -> str:
        return drift_key(self.vm_id)

    def labels(self) -> list[str]:
        """Drift with the VIPs it concerns, for logs and event results (`stale_routes:IP`)."""
        vips = {DriftKind.STALE: self.stale, DriftKind.NEW_VIP: self.new_vips}
        return [f"{d}:{','.join(vips[d])}" if vips.get(d) else str(d) for d in self.drift]


def drift_key(vm_id: str) -> str:
    """A short stable key of a VM (checkpoints list the VMs a sweep has done)."""
    return hashlib.sha256(arm_ids.normalize(vm_id).encode()).hexdigest()[:16]


def _detached_for(topology: Topology, managed_tag: str) -> set[str]:
    """VM keys whose managed NIC lies unattached (found by the naming convention)."""
    suffix = secondary_nic_name("").lower()
    out: set[str] = set()
    for nic in topology.nics.values():
        if nic.vm_id or not nic.is_managed(managed_tag) or not nic.name.lower().endswith(suffix):
            continue
        for vm in topology.vms_named(nic.name[: -len(suffix)]):
            if arm_ids.same(arm_ids.parent_id(arm_ids.parent_id(vm.id) or "") or "",
                            arm_ids.parent_id(arm_ids.parent_id(nic.id) or "") or ""):
                out.add(vm.key)
    return out


def _served_ips(evaluation: Evaluation) -> dict[str, set[str]]:
    """VM key -> the frontend IPs of every frontend the VM backs now (affected or not)."""
    out: dict[str, set[str]] = {}
    for item in (*evaluation.findings, *evaluation.not_affected):
        if item.frontend_ip:
            out.setdefault(arm_ids.normalize(item.vm_id), set()).add(item.frontend_ip)
    return out


def assess_vm(vm: Vm, topology: Topology, evaluation: Evaluation, verified_ips: set[str],
              served_ips: set[str], *, managed_tag: str, detached: bool,
              trigger: Trigger) -> VmDrift:
    managed = topology.managed_nics(vm, managed_tag)
    findings = [f for f in evaluation.for_vm(vm.id) if f.severity in ACTIONABLE]
    pools = frozenset(topology.pool_keys_of_vm(vm))
    d = VmDrift(vm.id, findings=[f.id for f in findings], managed_nic=bool(managed),
                running=vm.is_running, pools=pools, os_type=vm.os_type,
                stale=sorted(verified_ips - served_ips),
                new_vips=sorted({f.frontend_ip for f in findings if f.frontend_ip}
                                - verified_ips) if managed else [])
    restarted = bool(managed) and vm.is_running and vm.key in trigger.restarted
    if not managed and detached:
        d.drift.append(DriftKind.NIC_DETACHED)
    elif not managed and verified_ips:
        d.drift.append(DriftKind.NIC_MISSING)
    if any(cfg.pool_keys for nic in managed for cfg in nic.ip_configs):
        d.drift.append(DriftKind.NIC_IN_POOL)
    if d.new_vips:
        d.drift.append(DriftKind.NEW_VIP)
    if d.stale:
        d.drift.append(DriftKind.STALE)
    if restarted:
        d.drift.append(DriftKind.GUEST_RESTARTED)
    if not managed and findings and not d.drift:
        d.drift.append(DriftKind.NEW_FINDING)
    d.call = _call(d, restarted, trigger)
    return d


def _call(d: VmDrift, restarted: bool, trigger: Trigger) -> RemediationCall | None:
    if not d.managed_nic:
        needs_nic = d.findings or {DriftKind.NIC_MISSING, DriftKind.NIC_DETACHED} & set(d.drift)
        return RemediationCall.APPLY if needs_nic else None
    if DriftKind.NIC_IN_POOL in d.drift:
        return RemediationCall.APPLY
    if d.new_vips or d.stale or restarted:
        return RemediationCall.ENSURE_GUEST_ROUTES
    if d.running and trigger.check_guests:
        return RemediationCall.VERIFY
    return None


def assess(topology: Topology, evaluation: Evaluation, verified: Iterable[tuple[str, str]],
           settings: Settings, *, trigger: Trigger = Trigger(),
           vm_keys: Iterable[str] | None = None) -> list[VmDrift]:
    """Every VM (or those of `vm_keys`) with drift or a call, sorted by VM key."""
    verified_by_vm: dict[str, set[str]] = {}
    for vm_key, ip in verified:
        verified_by_vm.setdefault(arm_ids.normalize(vm_key), set()).add(ip)
    served = _served_ips(evaluation)
    detached = _detached_for(topology, settings.managed_tag)
    keys = sorted(topology.vms) if vm_keys is None else sorted(
        k for k in {arm_ids.normalize(v) for v in vm_keys} if k in topology.vms)
    out = []
    for key in keys:
        d = assess_vm(topology.vms[key], topology, evaluation, verified_by_vm.get(key, set()),
                      served.get(key, set()), managed_tag=settings.managed_tag,
                      detached=key in detached, trigger=trigger)
        if d.call or d.drift:
            out.append(d)
    return out


def unattended_call(d: VmDrift, settings: Settings) -> RemediationCall | None:
    """The call an unattended trigger makes: none in audit mode (nothing would be written)."""
    return None if settings.mode == Mode.AUDIT else d.call


def counts(drifts: Iterable[VmDrift]) -> Mapping[str, int]:
    out: dict[str, int] = {}
    for d in drifts:
        for kind in d.drift:
            out[kind] = out.get(kind, 0) + 1
    return out
