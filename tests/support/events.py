"""Event Grid payloads as a subscription system topic delivers them, and the event service's
test context: identities, builders, a recording stand-in for the remediation service."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from shared.core import events as ev
from shared.core.events import EventConfig
from shared.core.events.types import (
    ACTION_SUCCESS,
    DELETE_SUCCESS,
    HANDLED_OPERATIONS,
    WRITE_SUCCESS,
)
from shared.core.remediation.outcome import Outcome, VmOutcome
from shared.core.vocab import Status
from shared.services.events import EventProcessor
from shared.settings import Settings
from tests.support.fixtures_emulator import LB_ID, SUB, VNET_ID, P

TENANT = "72f988bf-0000-4000-8000-00000000e001"
VM1 = f"{P}/Microsoft.Compute/virtualMachines/vm1"
VM2 = f"{P}/Microsoft.Compute/virtualMachines/vm2"
NIC1 = f"{P}/Microsoft.Network/networkInterfaces/vm1-nic"
NIC2 = f"{P}/Microsoft.Network/networkInterfaces/vm2-nic"

# Someone else (an operator) and the function's own managed identity.
USER = {"oid": "9a9a9a9a-1111-4222-8333-444444444444", "appid": None, "upn": "ops@contoso.com"}
OWN = SimpleNamespace(principal_id="11111111-1111-4111-8111-111111111111",
                      client_id="22222222-2222-4222-8222-222222222222",
                      resource_id=f"/subscriptions/{SUB}/resourcegroups/rg-hairpin/providers/"
                                  "Microsoft.ManagedIdentity/userAssignedIdentities/hairpin-id")
OWN_IDENTITY = ev.OwnIdentity(OWN.principal_id, OWN.client_id, OWN.resource_id)


# --------------------------------------------------------------------------- payload builders

def type_for(operation: str) -> str:
    """The system-topic event type ARM uses for an operation (also for ones we do not handle)."""
    for etype, ops in HANDLED_OPERATIONS.items():
        if operation.lower() in (o.lower() for o in ops):
            return etype
    if operation.lower().endswith("/action"):
        return ACTION_SUCCESS
    return DELETE_SUCCESS if operation.lower().endswith("/delete") else WRITE_SUCCESS


def claims_for(caller: str, own=OWN, sub: str = SUB) -> tuple[dict, dict]:
    """(data.claims, data.authorization.evidence) as ARM writes them for a user or for us."""
    OWN = own  # noqa: N806 - the identity whose claims are built
    if caller == "own":
        claims = {
            "aud": "https://management.azure.com", "iss": f"https://sts.windows.net/{TENANT}/",
            "iat": "1764130000", "nbf": "1764130000", "exp": "1764216700",
            "aio": "k2BgYJjW", "appid": OWN.client_id, "appidacr": "2",
            "http://schemas.microsoft.com/identity/claims/identityprovider":
                f"https://sts.windows.net/{TENANT}/",
            "idtyp": "app",
            "http://schemas.microsoft.com/identity/claims/objectidentifier": OWN.principal_id,
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier":
                OWN.principal_id,
            "http://schemas.microsoft.com/identity/claims/tenantid": TENANT,
            "uti": "x1", "ver": "1.0", "xms_mirid": OWN.resource_id,
            "xms_tcdt": "1600000000",
        }
        evidence = {"role": "hairpin remediator", "roleAssignmentScope": f"/subscriptions/{sub}",
                    "roleAssignmentId": "0f0f", "roleDefinitionId": "1e1e",
                    "principalId": OWN.principal_id, "principalType": "ServicePrincipal"}
    else:
        claims = {
            "aud": "https://management.core.windows.net/",
            "iss": f"https://sts.windows.net/{TENANT}/", "iat": "1764130000",
            "nbf": "1764130000", "exp": "1764134000",
            "http://schemas.microsoft.com/claims/authnclassreference": "1",
            "aio": "AVQAq/8",
            "http://schemas.microsoft.com/claims/authnmethodsreferences": "pwd,mfa",
            "appid": "04b07795-8ddb-461a-bbee-02f9e1bf7b46", "appidacr": "0",
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname": "Ops",
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname": "Olga",
            "ipaddr": "203.0.113.7", "name": "Olga Ops",
            "http://schemas.microsoft.com/identity/claims/objectidentifier": USER["oid"],
            "puid": "10032000ABCDEF",
            "http://schemas.microsoft.com/identity/claims/scope": "user_impersonation",
            "http://schemas.microsoft.com/identity/claims/tenantid": TENANT,
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn": USER["upn"],
            "uti": "y2", "ver": "1.0",
        }
        evidence = {"role": "Owner", "roleAssignmentScope": f"/subscriptions/{sub}",
                    "principalId": USER["oid"], "principalType": "User"}
    return claims, evidence


def arm_event(operation: str, resource_id: str, *, caller: str = "user",
              event_id: str | None = None, at: datetime | None = None,
              event_type: str | None = None, status: str = "Succeeded",
              claims_as_string: bool = False, own=OWN) -> dict:
    """One Event Grid schema event exactly as a subscription system topic delivers it.
    `caller`: "user" (an operator) or "own" (the identity `own`: principal/client/resource id)."""
    sub = resource_id.split("/")[2]
    claims, evidence = claims_for(caller, own, sub)
    at = at or datetime.now(UTC)
    method = "DELETE" if operation.endswith("/delete") else (
        "POST" if operation.endswith("/action") else "PUT")
    data = {
        "authorization": {"scope": resource_id, "action": operation, "evidence": evidence},
        "claims": json.dumps(claims) if claims_as_string else claims,
        "correlationId": str(uuid.uuid4()),
        "httpRequest": json.dumps({"clientRequestId": str(uuid.uuid4()),
                                   "clientIpAddress": "203.0.113.7", "method": method,
                                   "url": f"https://management.azure.com{resource_id}"
                                          "?api-version=2024-05-01"}),
        "resourceProvider": operation.split("/")[0],
        "resourceUri": resource_id,
        "operationName": operation,
        "status": status,
        "subscriptionId": sub,
        "tenantId": TENANT,
    }
    return {
        "topic": f"/subscriptions/{sub}",
        "subject": resource_id,
        "eventType": event_type or type_for(operation),
        "eventTime": at.strftime("%Y-%m-%dT%H:%M:%S.%f") + "1Z",  # 7 digits, as Event Grid
        "id": event_id or str(uuid.uuid4()),
        "data": data,
        "dataVersion": "",
        "metadataVersion": "1",
    }


def as_cloud_event(event: dict) -> dict:
    return {"specversion": "1.0", "id": event["id"], "source": event["topic"],
            "subject": event["subject"], "type": event["eventType"],
            "time": event["eventTime"], "data": event["data"]}


RESOURCE_FOR = {
    "Microsoft.Compute/virtualMachines": VM1,
    "Microsoft.Network/networkInterfaces": NIC1,
    "Microsoft.Network/loadBalancers": LB_ID,
    "Microsoft.Network/virtualNetworks": VNET_ID,
}
CHILD_NAME = {"backendAddressPools": "be", "loadBalancingRules": "r1",
              "frontendIPConfigurations": "fe", "inboundNatRules": "nat1", "subnets": "default"}


def resource_for(operation: str) -> str:
    """The subject ARM gives an operation: the resource, or for a child's own operation
    (".../loadBalancers/backendAddressPools/write") the child under its parent."""
    parent = next(r for t, r in RESOURCE_FOR.items() if operation.lower().startswith(t.lower()))
    parts = operation.split("/")
    child = parts[2] if len(parts) == 4 and parts[3] in ("write", "delete") else None
    return f"{parent}/{child}/{CHILD_NAME[child]}" if child else parent


class NoArm:
    """A context that fails the test if anything reaches ARM."""

    def __init__(self):
        self.settings = Settings(mode="apply")
        self.journal = None
        self.notifier = None
        self.arm_calls = 0

    def clients(self, subscription_id):  # pragma: no cover - reaching this is the failure
        self.arm_calls += 1
        raise AssertionError("ARM must not be called for this event")


class RecordingRemediation:
    """Stand-in for shared.services.remediation in the service tests: records each call and
    answers with a real Outcome of a fixed status (tests/e2e/test_events_e2e.py uses the real
    service)."""

    def __init__(self, status: str = "applied"):
        self.status = status
        self.calls: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def _record(self, name, vm_id, trigger):
        with self._lock:
            self.calls.append((name, vm_id.lower()))
        status = Status(self.status)
        return Outcome(status, [f"{name} by test"], operation_id="op",
                       vms=[VmOutcome(vm_id, vm_id.rsplit("/", 1)[-1], status)],
                       verified=True if status.done else None)

    def apply(self, ctx, vm_id, trigger, *, approval=None, operation_id=None):
        return self._record("apply", vm_id, trigger)

    def ensure_guest_routes(self, ctx, vm_id, trigger, *, operation_id=None):
        return self._record("ensure_guest_routes", vm_id, trigger)

    def verify(self, ctx, vm_id, trigger):
        return self._record("verify", vm_id, trigger)

    def resume_interrupted(self, ctx, trigger):
        with self._lock:
            self.calls.append(("resume_interrupted", ""))
        return []

    def rollback(self, ctx, vm_id, trigger, *, approval=None):
        return self._record("rollback", vm_id, trigger)

    def of(self, name):
        return [vm for n, vm in self.calls if n == name]


class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())



# --------------------------------------------------------------------------- the service

CALLERS = json.dumps({"vm1": ["10.0.1.100:1972"], "vm2": ["10.0.1.100:1972"]})


def make_settings(emu, storage_ns=None, **env) -> Settings:
    values = {"HAIRPIN_MODE": "apply", "HAIRPIN_DECLARED_CALLERS": CALLERS,
              "HAIRPIN_ARM_ENDPOINT": emu.base_url}
    if storage_ns is not None:
        values.update({"HAIRPIN_STORAGE_PREFIX": storage_ns.prefix,
                       "HAIRPIN_LOCK_LEASE_SECONDS": "15"})
    values.update(env)
    return Settings.from_env(values)


def make_ctx(emu, storage_ns=None, settings_obj: Settings | None = None, **env):
    """A ServiceContext on the emulator (+ Azurite storage under the test's own names)."""
    from azure.identity import ManagedIdentityCredential

    from shared.services.context import ServiceContext
    from shared.storage.journal import Journal
    from shared.storage.locks import LockManager
    from shared.storage.reports import ReportStore

    s = settings_obj or make_settings(emu, storage_ns, **env)
    ctx = ServiceContext(s, credential=ManagedIdentityCredential(), polling_interval=0)
    if storage_ns is not None:
        ctx.journal = Journal(storage_ns.table_service(), table=storage_ns.table("journal"),
                              state_table=storage_ns.table("state")).ensure()
        ctx.locks = LockManager(storage_ns.blob_service(), container=storage_ns.container("locks"),
                                lease_seconds=15).ensure()
        ctx.reports = ReportStore(storage_ns.blob_service(),
                                  container=storage_ns.container("reports")).ensure()
    return ctx


def processor(ctx, remediation=None, **config) -> EventProcessor:
    return EventProcessor(ctx, remediation=remediation or RecordingRemediation(),
                          identity=OWN_IDENTITY,
                          config=EventConfig(**{"window_seconds": 60, "clock_skew_seconds": 2,
                                                **config}))


def ago(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)
