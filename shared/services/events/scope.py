"""What one event touches, read from current state: the VMs in scope and whether we wrote it.

`StateReader` reads ARM documents (each at most once per pass); `is_transient` / `is_gone`
classify what reading (or anything after it) raised; `ScopeResolver` maps the subject to the
VMs to evaluate and recognises our own writes from the journal when the claims do not say.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from azure.core.exceptions import (
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from shared.azure.discovery import discover_subscription
from shared.azure.retry import RetryBudgetExceeded
from shared.core import arm_ids
from shared.core.arm_docs import (
    is_managed,
    lb_of_pool,
    member_nics_of_lb,
    pool_ids_of_nic,
    vm_of_nic,
)
from shared.core.events import (
    T_LB,
    T_NIC,
    T_VM,
    T_VNET,
    EventConfig,
    OwnIdentity,
    ResourceEvent,
    TransientEventError,
)
from shared.core.risk import secondary_nic_name
from shared.core.vocab import JournalAction, JournalResult, RecordKind
from shared.services.context import ServiceContext
from shared.services.events.claims import ClaimStore
from shared.storage.locks import LockBusy, LockLost
from shared.storage.reports import CheckpointConflict

__all__ = ["StateReader", "ScopeResolver", "is_transient", "is_gone"]

# Journal actions that are not writes of ours to a VM (they never make an event "ours").
OWN_JOURNAL_ACTIONS_EXCLUDED = (JournalAction.EVENT, JournalAction.EVENT_REJECTED,
                                JournalAction.SWEEP)


# --------------------------------------------------------------------------- error classes

def is_transient(exc: BaseException) -> bool:
    """Would the same call probably work later? (throttling, 5xx, network, busy lock)"""
    if isinstance(exc, TransientEventError | RetryBudgetExceeded | ServiceRequestError
                  | ServiceResponseError | TimeoutError | ConnectionError | LockBusy | LockLost
                  | CheckpointConflict):
        return True
    if isinstance(exc, ResourceNotFoundError):
        return False
    if isinstance(exc, HttpResponseError):
        status = getattr(exc, "status_code", None) or 0
        code = str(getattr(getattr(exc, "error", None), "code", "") or "")
        return status in (408, 409, 429) or status >= 500 or "Retryable" in code
    return False


def is_gone(exc: BaseException) -> bool:
    return isinstance(exc, ResourceNotFoundError) or (
        isinstance(exc, HttpResponseError) and getattr(exc, "status_code", None) == 404)


# --------------------------------------------------------------------------- reading state

class StateReader:
    """Current ARM documents, each read at most once per pass (a small per-pass cache)."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self._docs: dict[str, dict | None] = {}
        self.reads = 0

    def _clients(self, resource_id: str):
        sub = arm_ids.parse(resource_id).subscription
        return self.ctx.clients(sub)

    def get(self, resource_id: str) -> dict | None:
        """The document, or None when it does not exist (404). Other errors raise."""
        key = arm_ids.normalize(resource_id)
        if key in self._docs:
            return self._docs[key]
        rid = arm_ids.parse(resource_id)
        rtype = (rid.type or "").lower()
        c = self._clients(resource_id)
        try:
            self.reads += 1
            if rtype == T_VM.lower():
                doc = c.compute.virtual_machines.get(rid.resource_group, rid.names[0],
                                                     expand="instanceView").as_dict()
            elif rtype == T_NIC.lower():
                doc = c.network.network_interfaces.get(rid.resource_group, rid.names[0]).as_dict()
            elif rtype == T_LB.lower():
                doc = c.network.load_balancers.get(rid.resource_group, rid.names[0]).as_dict()
            elif rtype == T_VNET.lower():
                doc = c.network.virtual_networks.get(rid.resource_group,
                                                     rid.names[0]).as_dict()
            else:
                raise ValueError(f"cannot read {rid.type}")
        except Exception as exc:
            if is_gone(exc):
                doc = None
            else:
                raise
        self._docs[key] = doc
        return doc

    def known(self, resource_id: str) -> bool:
        return arm_ids.normalize(resource_id) in self._docs

    def bulk(self, subscription_id: str) -> None:
        """Every NIC, LB and VM of a subscription in a few paged calls (for large passes)."""
        found = discover_subscription(self.ctx.clients(subscription_id), include_health=False,
                                      include_skus=False)
        self.reads += 1
        for doc in found["resources"]:
            self._docs[arm_ids.normalize(doc["id"])] = doc


class ScopeResolver:
    """An event's subject -> the VMs to evaluate, from documents read now (never from the
    payload); and whether we made the change, from the journal when the claims do not say."""

    def __init__(self, ctx: ServiceContext, config: EventConfig, claims: ClaimStore,
                 identity: OwnIdentity, now: Callable[[], datetime]) -> None:
        self.ctx = ctx
        self.config = config
        self.claims = claims
        self.identity = identity
        self.now = now
        self.journal = ctx.journal

    # -- scope ------------------------------------------------------------------------------
    def resolve(self, ev: ResourceEvent, reader: StateReader,
                event_time: datetime) -> tuple[set[str], str | None]:
        """Scope -> VM ids, from current state. (vms, reason-when-the-subject-is-gone)"""
        memo = self.claims.subject_memo(ev, event_time)
        if memo is not None:
            return set(memo), None
        read_at = self.now()
        if ev.resource_type == T_VM:
            vms, gone = {ev.target_id}, None
        elif ev.resource_type == T_NIC:
            vms, gone = self._nic_scope(ev, reader)
        elif ev.resource_type == T_VNET:
            vms, gone = self._subnet_scope(ev, reader)
        else:
            vms, gone = self._lb_scope(ev, reader)
        if gone and vms:
            gone = None  # the subject is gone, but VMs it affected are evaluated
        self.claims.remember_subject(ev, read_at, sorted(vms))
        return vms, gone

    def _nic_scope(self, ev: ResourceEvent, reader: StateReader) -> tuple[set[str], str | None]:
        """A NIC's VM, and the VMs sharing a pool with it (the NIC as read now)."""
        nic = None if ev.target_deleted else reader.get(ev.target_id)
        if nic is None:
            return self._vms_for_missing_nic(ev, reader), "network interface no longer exists"
        vms: set[str] = set()
        vm = vm_of_nic(nic)
        if vm:
            vms.add(vm)
        elif is_managed(nic, self.ctx.settings.managed_tag):
            vms |= self._vms_for_missing_nic(ev, reader)  # a detached managed NIC
        for lb_id in {lb_of_pool(p) for p in pool_ids_of_nic(nic)} - {None}:
            lb = reader.get(lb_id)
            pools = [p for p in pool_ids_of_nic(nic) if arm_ids.same(lb_of_pool(p), lb_id)]
            vms |= self._vms_of_nics(member_nics_of_lb(lb, pools), reader)
        return vms, None

    def _lb_scope(self, ev: ResourceEvent, reader: StateReader) -> tuple[set[str], str | None]:
        """An LB (also for a write or delete of one of its pools, rules, frontends or NAT
        rules): the VMs in its pools as read now, and the VMs holding verified routes."""
        lb = None if ev.target_deleted else reader.get(ev.target_id)
        vms: set[str] = set()
        gone = None
        if lb is None:
            gone = "load balancer no longer exists"
        else:
            vms |= self._vms_of_nics(member_nics_of_lb(lb), reader)
        # VMs holding verified routes may have routes to this LB's (removed) frontends or
        # ports, and a pool's members before the write are not in the document any more.
        vms |= self._verified_vms(ev.subscription_id)
        return vms, gone

    def _subnet_scope(self, ev: ResourceEvent,
                      reader: StateReader) -> tuple[set[str], str | None]:
        """A subnet write: the VMs with a NIC in that subnet, as the VNet reads now (a subnet
        lists the NIC IP configurations in it)."""
        vnet = reader.get(ev.target_id)
        if vnet is None:
            return set(), "virtual network no longer exists"
        nics = []
        for subnet in (vnet.get("properties") or {}).get("subnets") or []:
            if ev.is_child and not arm_ids.same(subnet.get("id"), ev.resource_id):
                continue
            for ipc in (subnet.get("properties") or {}).get("ipConfigurations") or []:
                parsed = arm_ids.try_parse(ipc.get("id") if isinstance(ipc, dict) else None)
                if parsed is not None and parsed.is_type(
                        f"{T_NIC}/ipConfigurations"):
                    nics.append(str(parsed.top_level))
        return self._vms_of_nics(list(dict.fromkeys(nics)), reader), None

    def _vms_of_nics(self, nic_ids: list[str], reader: StateReader) -> set[str]:
        if len(nic_ids) > self.config.bulk_read_threshold and not all(
                reader.known(n) for n in nic_ids):
            reader.bulk(arm_ids.parse(nic_ids[0]).subscription)
        out = set()
        for nic_id in nic_ids:
            vm = vm_of_nic(reader.get(nic_id))
            if vm:
                out.add(vm)
        return out

    def _vms_for_missing_nic(self, ev: ResourceEvent, reader: StateReader) -> set[str]:
        """A managed NIC deleted or detached: its VM by the naming convention, else the VMs the
        journal says hold verified routes in that resource group."""
        rid = arm_ids.parse(ev.target_id)
        nic_name = rid.names[0]
        suffix = secondary_nic_name("")
        out: set[str] = set()
        if nic_name.lower().endswith(suffix.lower()) and len(nic_name) > len(suffix):
            vm_id = arm_ids.build(rid.subscription, rid.resource_group, "Microsoft.Compute",
                                  "virtualMachines", nic_name[: -len(suffix)])
            if reader.get(vm_id) is not None:
                out.add(vm_id)
        if not out:
            rg = f"/subscriptions/{rid.subscription}/resourcegroups/{rid.resource_group}/".lower()
            out |= {v for v in self._verified_vms(ev.subscription_id)
                    if arm_ids.normalize(v).startswith(rg)}
        return out

    def _verified_vms(self, subscription_id: str) -> set[str]:
        if self.journal is None:
            return set()
        prefix = f"/subscriptions/{subscription_id}/".lower()
        return {r.vm_id for r in self.journal.open_records(RecordKind.VERIFIED_ROUTE)
                if arm_ids.normalize(r.vm_id).startswith(prefix)}

    # -- own writes --------------------------------------------------------------------------
    def own_by_journal(self, ev: ResourceEvent, vm_ids: set[str], event_time: datetime) -> bool:
        """When the claims do not name the caller (or we do not know who we are): did our
        remediation write to one of these VMs around the event's time?"""
        if self.identity and ev.caller.known:
            return False  # the claims decide: someone else did it
        if self.journal is None:
            return False
        window = timedelta(seconds=self.config.own_write_journal_seconds)
        skew = timedelta(seconds=self.config.clock_skew_seconds)
        for vm in sorted(vm_ids)[:10]:
            for entry in self.journal.history(vm, 20):
                if entry.action in OWN_JOURNAL_ACTIONS_EXCLUDED:
                    continue
                if entry.result not in (JournalResult.STARTED, JournalResult.SUCCEEDED):
                    continue
                if event_time - window <= entry.timestamp <= event_time + skew:
                    return True
        return False
