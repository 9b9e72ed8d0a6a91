"""Pure: what the drift sweep will do, VM by VM (no Azure SDK, no I/O).

`plan_work` turns a topology, its evaluation and the journal's verified routes into one
`VmWork` per VM with drift or work: the drift found (the `D_*` kinds, also the sweep summary's
keys) and the one remediation call that reconciles it (`apply`, `ensure_guest_routes` or a
`verify` by Run Command). `shared.services.sweep` runs it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from shared.core import arm_ids

ACTIONABLE = ("high", "medium")

# Drift kinds (summary keys)
D_NEW_FINDING = "new_finding"
D_NEW_VIP = "route_missing_for_new_frontend"
D_NIC_MISSING = "managed_nic_missing"  # detached or deleted
D_NIC_DETACHED = "managed_nic_detached"
D_NIC_IN_POOL = "managed_nic_in_pool"
D_GUEST_ROUTES = "guest_routes_missing"
D_STALE = "stale_routes"
D_LEFT_DEALLOCATED = "left_deallocated"


@dataclass
class VmWork:
    """What the sweep found for one VM and what it will call."""

    vm_id: str
    drift: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    call: str | None = None  # apply | ensure_guest_routes | verify
    managed_nic: bool = False
    running: bool = False
    pools: frozenset[str] = frozenset()  # remediation locks these: never two VMs of a pool at once
    os_type: str | None = None
    stale: list[str] = field(default_factory=list)  # VIPs of removed frontends with routes

    @property
    def key(self) -> str:
        return _short_key(self.vm_id)


def _short_key(vm_id: str) -> str:
    return hashlib.sha256(arm_ids.normalize(vm_id).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- planning (pure)

def plan_work(topology, evaluation, verified, settings) -> list[VmWork]:
    """Per VM, the drift found and the one remediation call that reconciles it (pure)."""
    from shared.core.risk import secondary_nic_name

    work: dict[str, VmWork] = {}

    def item(vm) -> VmWork:
        return work.setdefault(vm.key, VmWork(vm.id))

    verified_by_vm: dict[str, set[str]] = {}
    for vm_key, ip in verified:
        verified_by_vm.setdefault(vm_key, set()).add(ip)

    current_ips: dict[str, set[str]] = {}
    for f in evaluation.findings:
        if f.frontend_ip:
            current_ips.setdefault(arm_ids.normalize(f.vm_id), set()).add(f.frontend_ip)
    for n in evaluation.not_affected:
        if n.frontend_ip:
            current_ips.setdefault(arm_ids.normalize(n.vm_id), set()).add(n.frontend_ip)

    suffix = secondary_nic_name("").lower()
    detached_for: set[str] = set()
    for nic in topology.nics.values():
        if nic.is_managed(settings.managed_tag) and not nic.vm_id and nic.name.lower().endswith(
                suffix):
            for vm in topology.vms_named(nic.name[: -len(suffix)]):
                if arm_ids.same(arm_ids.parent_id(arm_ids.parent_id(vm.id) or "") or "",
                                arm_ids.parent_id(arm_ids.parent_id(nic.id) or "") or ""):
                    detached_for.add(vm.key)

    for vm in sorted(topology.vms.values(), key=lambda v: v.key):
        managed = [topology.nics[k] for k in vm.nic_keys
                   if k != vm.primary_nic_key and k in topology.nics
                   and topology.nics[k].is_managed(settings.managed_tag)]
        findings = [f for f in evaluation.for_vm(vm.id) if f.severity in ACTIONABLE]
        verified_ips = verified_by_vm.get(vm.key, set())
        new_vips = sorted({f.frontend_ip for f in findings if f.frontend_ip} - verified_ips)
        stale = sorted(verified_ips - current_ips.get(vm.key, set()))
        pools = frozenset(pk for nk in vm.nic_keys if nk in topology.nics
                          for cfg in topology.nics[nk].ip_configs
                          for pk in topology.ip_config_pools.get(cfg.key, ()))
        w = VmWork(vm.id, findings=[f.id for f in findings], managed_nic=bool(managed),
                   running=vm.is_running, pools=pools, os_type=vm.os_type, stale=stale)
        if vm.key in detached_for and not managed:
            w.drift.append(D_NIC_DETACHED)
        elif verified_ips and not managed:
            w.drift.append(D_NIC_MISSING)
        if managed and any(cfg.pool_keys for n in managed for cfg in n.ip_configs):
            w.drift.append(D_NIC_IN_POOL)
        if managed and new_vips:
            w.drift.append(D_NEW_VIP)
        if managed and stale:
            w.drift.append(D_STALE)
        if not managed and findings and not w.drift:
            w.drift.append(D_NEW_FINDING)
        # One call per VM: apply when the NIC side needs work, else the guest side.
        if not managed and (findings or D_NIC_MISSING in w.drift or D_NIC_DETACHED in w.drift):
            w.call = "apply"
        elif D_NIC_IN_POOL in w.drift:
            w.call = "apply"
        elif managed and (new_vips or stale):
            w.call = "ensure_guest_routes"
        elif managed and vm.is_running:
            w.call = "verify"  # routes may be missing in the guest: check by Run Command
        if w.call or w.drift:
            work[vm.key] = w
    return [work[k] for k in sorted(work)]
