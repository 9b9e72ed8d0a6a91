"""Event Grid subscription events: parsing (pure), scoping, own-write recognition, duplicates,
bursts, out-of-order delivery, deletes, transient/permanent failures and malformed input.

Payloads are built from the documented system-topic schema (Azure Resource Manager events:
`subject`, `data.resourceUri`, `data.operationName`, `data.claims`, `data.authorization`,
`data.status`, ...). Service tests run on the ARM emulator + Azurite with a recording stand-in
for the remediation service (the real one is exercised in tests/test_events_e2e.py)."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.core import events as ev
from shared.core.events import EventConfig
from shared.core.events.types import (
    ACTION_SUCCESS,
    ALL_HANDLED_OPERATIONS,
    DELETE_SUCCESS,
    HANDLED_EVENT_TYPES,
    HANDLED_OPERATIONS,
    WRITE_SUCCESS,
)
from shared.services.events import EventProcessor
from shared.settings import Settings
from tests.support.fixtures_emulator import LB_ID, SUB, P

ROOT = Path(__file__).resolve().parent.parent
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

def _type_for(operation: str) -> str:
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
        "eventType": event_type or _type_for(operation),
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
}


def _resource_for(operation: str) -> str:
    return next(r for t, r in RESOURCE_FOR.items() if operation.lower().startswith(t.lower()))


# --------------------------------------------------------------------------- pure parsing

@pytest.mark.parametrize("operation", ALL_HANDLED_OPERATIONS)
@pytest.mark.parametrize("schema", ["eventgrid", "cloudevents"])
def test_every_handled_operation_parses_with_its_scope(operation, schema):
    raw = arm_event(operation, _resource_for(operation))
    if schema == "cloudevents":
        raw = as_cloud_event(raw)
    parsed = ev.parse_event(raw)
    assert isinstance(parsed, ev.ResourceEvent), parsed
    assert parsed.operation == operation and parsed.event_type == _type_for(operation)
    assert parsed.schema == schema
    assert parsed.subscription_id == SUB
    assert parsed.caller.object_id == USER["oid"] and parsed.caller.principal_type == "User"
    assert parsed.event_time is not None and parsed.event_time.tzinfo is not None
    scope = parsed.scope
    if operation.startswith("Microsoft.Compute"):
        assert scope.vm_ids == {VM1.lower()}
    elif "networkInterfaces" in operation:
        assert scope.nic_ids == {NIC1.lower()} and scope.deleted == operation.endswith("delete")
    else:
        assert scope.lb_ids == {LB_ID.lower()} and scope.deleted == operation.endswith("delete")


def test_operation_and_type_matching_is_case_insensitive():
    raw = arm_event("Microsoft.Network/loadBalancers/write", LB_ID)
    raw["data"]["operationName"] = "MICROSOFT.NETWORK/LOADBALANCERS/WRITE"
    raw["eventType"] = "microsoft.resources.resourcewritesuccess"
    raw["subject"] = LB_ID.upper().replace("SUBSCRIPTIONS", "subscriptions")
    parsed = ev.parse_event(raw)
    assert isinstance(parsed, ev.ResourceEvent)
    assert parsed.operation == "Microsoft.Network/loadBalancers/write"
    assert parsed.event_type == WRITE_SUCCESS


@pytest.mark.parametrize("claims_as_string", [False, True])
def test_own_identity_recognised_from_claims_and_evidence(claims_as_string):
    raw = arm_event("Microsoft.Compute/virtualMachines/write", VM1, caller="own",
                    claims_as_string=claims_as_string)
    parsed = ev.parse_event(raw)
    assert ev.is_own_write(parsed, OWN_IDENTITY)
    # Each identifier on its own is enough.
    assert ev.is_own_write(parsed, ev.OwnIdentity(principal_id=OWN.principal_id.upper()))
    assert ev.is_own_write(parsed, ev.OwnIdentity(client_id=OWN.client_id))
    assert ev.is_own_write(parsed, ev.OwnIdentity(resource_id=OWN.resource_id.upper()))
    # Unknown identity recognises nothing; someone else's write is not ours.
    assert not ev.is_own_write(parsed, ev.OwnIdentity())
    other = ev.parse_event(arm_event("Microsoft.Compute/virtualMachines/write", VM1))
    assert not ev.is_own_write(other, OWN_IDENTITY)


def test_own_identity_from_evidence_only():
    raw = arm_event("Microsoft.Network/networkInterfaces/write", NIC1, caller="own")
    raw["data"]["claims"] = {}
    parsed = ev.parse_event(raw)
    assert parsed.caller.object_id == OWN.principal_id
    assert ev.is_own_write(parsed, ev.OwnIdentity(principal_id=OWN.principal_id))


def test_own_identity_from_env_and_from_our_token(emulator):
    env = {ev.ENV_PRINCIPAL_ID: OWN.principal_id, "AZURE_CLIENT_ID": OWN.client_id}
    assert ev.own_identity_from_env(env) == ev.OwnIdentity(OWN.principal_id, OWN.client_id)
    assert not ev.own_identity_from_env({})
    emu = emulator()
    ident = ev.identity_from_jwt(emu.token_for())
    assert ident.principal_id == emu.tokens.identities[0].principal_id
    assert ident.client_id == emu.tokens.identities[0].client_id
    assert ev.identity_from_jwt("not a token") == ev.OwnIdentity()


@pytest.mark.parametrize("mutate, reason", [
    (lambda e: e.update(eventType="Microsoft.Storage.BlobCreated"), "not a resource event"),
    (lambda e: e.update(eventType="Microsoft.Resources.ResourceWriteFailure"), "failed"),
    (lambda e: e.update(eventType="Microsoft.Resources.ResourceActionCancel"), "cancelled"),
    (lambda e: e["data"].update(operationName="Microsoft.Storage/storageAccounts/write"),
     "not handled"),
    (lambda e: e["data"].update(
        operationName="Microsoft.Compute/virtualMachines/deallocate/action"), "not handled"),
    (lambda e: e["data"].update(status="Failed"), "status"),
    (lambda e: e.update(eventType="Microsoft.EventGrid.SubscriptionValidationEvent"), "validation"),
])
def test_irrelevant_events_are_ignored_cheaply(mutate, reason):
    raw = arm_event("Microsoft.Compute/virtualMachines/write", VM1)
    mutate(raw)
    parsed = ev.parse_event(raw)
    assert isinstance(parsed, ev.Ignored), parsed
    assert reason in parsed.reason


def test_child_resource_write_is_ignored():
    raw = arm_event("Microsoft.Network/loadBalancers/write", LB_ID)
    raw["data"]["operationName"] = "Microsoft.Network/loadBalancers/backendAddressPools/write"
    raw["subject"] = raw["data"]["resourceUri"] = f"{LB_ID}/backendAddressPools/be"
    assert isinstance(ev.parse_event(raw), ev.Ignored)


@pytest.mark.parametrize("mutate, reason", [
    (lambda e: e.pop("id"), "event id"),
    (lambda e: e.update(id=""), "event id"),
    (lambda e: e.update(id=["x"]), "event id"),
    (lambda e: e.pop("eventType"), "event type"),
    (lambda e: e.pop("data"), "data"),
    (lambda e: e.update(data="not json"), "data"),
    (lambda e: e["data"].pop("operationName"), "operationName"),
    (lambda e: (e["data"].pop("resourceUri"), e.pop("subject")), "names the resource"),
    (lambda e: (e["data"].update(resourceUri="vm1"), e.update(subject="vm1")), "not an ARM"),
    (lambda e: e["data"].update(resourceUri=VM2), "different resources"),
    (lambda e: (e["data"].update(resourceUri=NIC1), e.update(subject=NIC1)), "on a"),
    (lambda e: e.update(eventTime="yesterday"), "time"),
    (lambda e: e.update(eventType=DELETE_SUCCESS), "cannot come with"),
    (lambda e: e["data"].update(subscriptionId="00000000-0000-0000-0000-0000000000bb"),
     "subscriptionId"),
])
def test_malformed_events_are_rejected_with_a_reason(mutate, reason):
    raw = arm_event("Microsoft.Compute/virtualMachines/write", VM1)
    mutate(raw)
    parsed = ev.parse_event(raw)
    assert isinstance(parsed, ev.Rejected), parsed
    assert reason in parsed.reason


@pytest.mark.parametrize("raw", [None, 42, [], "", "{", b"\xff\xfe", "[1,2]", {"id": 5},
                                 object()])
def test_garbage_is_rejected_not_raised(raw):
    assert isinstance(ev.parse_event(raw), ev.Rejected)


def test_functions_event_object_and_json_text_parse():
    import azure.functions as func

    raw = arm_event("Microsoft.Compute/virtualMachines/restart/action", VM1)
    obj = func.EventGridEvent(id=raw["id"], data=raw["data"], topic=raw["topic"],
                              subject=raw["subject"], event_type=raw["eventType"],
                              event_time=datetime.now(UTC), data_version="")
    for item in (obj, json.dumps(raw), json.dumps(raw).encode(), json.dumps([raw])):
        parsed = ev.parse_event(item)
        assert isinstance(parsed, ev.ResourceEvent), parsed
        assert parsed.event_type == ACTION_SUCCESS and parsed.key == VM1.lower()


# --------------------------------------------------------------------------- fuzzing

def _json_values():
    return st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
        | st.text(max_size=40),
        lambda children: st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=12), children, max_size=4),
        max_leaves=12)


_FIELDS = ["id", "subject", "eventType", "eventTime", "data", "topic", "specversion", "type"]
_DATA_FIELDS = ["operationName", "resourceUri", "claims", "authorization", "status",
                "subscriptionId"]


@st.composite
def mutated_events(draw):
    """A real-shaped event with some fields removed or replaced by arbitrary JSON."""
    op = draw(st.sampled_from(ALL_HANDLED_OPERATIONS))
    raw = arm_event(op, _resource_for(op))
    for name in draw(st.lists(st.sampled_from(_FIELDS), max_size=3)):
        if draw(st.booleans()):
            raw.pop(name, None)
        else:
            raw[name] = draw(_json_values())
    if isinstance(raw.get("data"), dict):
        for name in draw(st.lists(st.sampled_from(_DATA_FIELDS), max_size=3)):
            if draw(st.booleans()):
                raw["data"].pop(name, None)
            else:
                raw["data"][name] = draw(_json_values())
    return raw


class _NoArm:
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
    answers with a fixed status (tests/test_events_e2e.py uses the real service)."""

    def __init__(self, status: str = "applied"):
        self.status = status
        self.calls: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def _record(self, name, vm_id, trigger):
        with self._lock:
            self.calls.append((name, vm_id.lower()))
        return SimpleNamespace(status=self.status, vm_id=vm_id, verified=True,
                               message=f"{name} by test", plan_hash=None, operation_id="op")

    def apply(self, ctx, vm_id, trigger, *, approval=None):
        return self._record("apply", vm_id, trigger)

    def ensure_guest_routes(self, ctx, vm_id, trigger):
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


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=mutated_events() | _json_values())
def test_fuzzed_events_never_crash_and_malformed_ones_write_nothing(raw):
    parsed = ev.parse_event(raw)
    assert isinstance(parsed, ev.ResourceEvent | ev.Ignored | ev.Rejected)
    if isinstance(parsed, ev.ResourceEvent):
        return  # a valid event (the mutation kept it valid): handled by the service tests
    ctx, remediation = _NoArm(), RecordingRemediation()
    processor = EventProcessor(ctx, remediation=remediation, identity=OWN_IDENTITY)
    handler = _ListHandler()
    log = logging.getLogger("hairpin.events")
    log.addHandler(handler)
    try:
        result = processor.handle(raw)
    finally:
        log.removeHandler(handler)
    assert result.status in ("rejected", "ignored")
    assert ctx.arm_calls == 0 and remediation.calls == []
    if isinstance(parsed, ev.Rejected):
        assert parsed.reason
        assert any("rejected" in r and parsed.reason in r for r in handler.lines)


class _ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


# --------------------------------------------------------------------------- deployment wiring

def test_infra_event_subscription_matches_event_types():
    template = json.loads((ROOT / "infra" / "eventgrid.json").read_text())
    types = {r["type"]: r for r in template["resources"]}
    topic = types["Microsoft.EventGrid/systemTopics"]
    assert topic["properties"]["topicType"] == "Microsoft.Resources.Subscriptions"
    assert topic["location"] == "global"
    sub = types["Microsoft.EventGrid/systemTopics/eventSubscriptions"]["properties"]
    variables = template["variables"]
    assert sub["filter"]["includedEventTypes"] == "[variables('handledEventTypes')]"
    assert variables["handledEventTypes"] == list(HANDLED_EVENT_TYPES)
    (adv,) = sub["filter"]["advancedFilters"]
    assert adv["key"] == "data.operationName" and adv["operatorType"] == "StringIn"
    assert adv["values"] == "[variables('handledOperations')]"
    assert variables["handledOperations"] == list(ALL_HANDLED_OPERATIONS)
    assert len(ALL_HANDLED_OPERATIONS) <= 25  # Event Grid: at most 25 values per StringIn
    assert sub["retryPolicy"]["maxDeliveryAttempts"] == "[parameters('maxDeliveryAttempts')]"
    assert template["parameters"]["eventTimeToLiveInMinutes"]["defaultValue"] == 1440
    dest = sub["destination"]
    assert dest["endpointType"] == "AzureFunction" and dest["properties"]["maxEventsPerBatch"] == 1
    assert template["parameters"]["eventFunctionName"]["defaultValue"] == "on_resource_event"
    dl = sub["deadLetterWithResourceIdentity"]["deadLetterDestination"]
    assert dl["endpointType"] == "StorageBlob"
    # Every parameter and variable the resources use is declared.
    text = json.dumps(template["resources"])
    import re

    for name in re.findall(r"parameters\('([^']+)'\)", text):
        assert name in template["parameters"], name
    for name in re.findall(r"variables\('([^']+)'\)", text):
        assert name in variables, name


# --------------------------------------------------------------------------- the service

CALLERS = json.dumps({"vm1": ["10.0.1.100:1972"], "vm2": ["10.0.1.100:1972"]})


def make_settings(emu, storage_ns=None, **env) -> Settings:
    values = {"HAIRPIN_MODE": "apply", "HAIRPIN_DECLARED_CALLERS": CALLERS,
              "HAIRPIN_ARM_ENDPOINT": emu.base_url}
    if storage_ns is not None:
        values.update({"HAIRPIN_REPORT_CONTAINER": storage_ns.container("reports"),
                       "HAIRPIN_LOCK_CONTAINER": storage_ns.container("locks"),
                       "HAIRPIN_JOURNAL_TABLE": storage_ns.table("journal"),
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


@pytest.mark.azurite
def test_vm_write_evaluates_current_state_and_hands_at_risk_vm_to_remediation(
        emulator, storage_ns):
    emu = emulator()
    ctx = make_ctx(emu, storage_ns)
    rem = RecordingRemediation()
    p = processor(ctx, rem)
    result = p.handle(arm_event("Microsoft.Compute/virtualMachines/write", VM1, at=ago(30)))
    assert result.status == "evaluated" and result.evaluated == [VM1]
    assert result.findings and rem.calls == [("apply", VM1.lower())]
    assert result.remediations == [{"vm_id": VM1, "call": "apply", "status": "applied"}]
    entries = ctx.journal.history(VM1, 10, action="event")
    assert entries and entries[0].trigger.event_id == result.event_id
    assert entries[0].after["status"] == "evaluated"
    # Nothing was written to ARM by the event path itself (remediation is the only writer).
    assert emu.requests.writes() == []


@pytest.mark.azurite
def test_duplicate_event_id_gives_one_remediation_across_processors(emulator, storage_ns):
    emu = emulator()
    ctx = make_ctx(emu, storage_ns)
    rem = RecordingRemediation()
    raw = arm_event("Microsoft.Compute/virtualMachines/write", VM1, at=ago(30))
    first = processor(ctx, rem).handle(raw)
    again = processor(ctx, rem).handle(json.loads(json.dumps(raw)))  # another host instance
    same_host = processor(ctx, rem)
    same_host.handle(raw)
    assert first.status == "evaluated"
    assert again.status == "duplicate"
    assert rem.of("apply") == [VM1.lower()]


@pytest.mark.azurite
def test_burst_of_writes_for_one_vm_is_one_pass(emulator, storage_ns):
    emu = emulator()
    ctx = make_ctx(emu, storage_ns)
    rem = RecordingRemediation()
    p = processor(ctx, rem)
    burst = [arm_event(op, res, at=ago(40 - i))
             for i, (op, res) in enumerate(
                 [("Microsoft.Compute/virtualMachines/write", VM1),
                  ("Microsoft.Network/networkInterfaces/write", NIC1),
                  ("Microsoft.Compute/virtualMachines/write", VM1),
                  ("Microsoft.Compute/virtualMachines/start/action", VM1)] * 5)]
    results = p.handle_batch(burst)
    statuses = [r.status for r in results]
    # The NIC write's scope is the VM plus its pool peers (vm2): one pass each.
    assert p.stats["passes"] == 2
    assert statuses.count("coalesced") == len(burst) - 2
    assert sorted(rem.of("apply")) == sorted([VM1.lower(), VM2.lower()])
    # A second host instance sees the same passes in the state table.
    rem2 = RecordingRemediation()
    late = processor(ctx, rem2).handle(arm_event("Microsoft.Compute/virtualMachines/write",
                                                 VM1, at=ago(20)))
    assert late.status == "coalesced" and rem2.calls == []


@pytest.mark.azurite
def test_change_after_the_pass_read_state_gets_another_pass(emulator, storage_ns):
    emu = emulator()
    ctx = make_ctx(emu, storage_ns)
    rem = RecordingRemediation("unchanged")
    p = processor(ctx, rem, clock_skew_seconds=0)
    p.handle(arm_event("Microsoft.Compute/virtualMachines/write", VM1, at=ago(30)))
    later = p.handle(arm_event("Microsoft.Compute/virtualMachines/write", VM1,
                               at=datetime.now(UTC) + timedelta(seconds=1)))
    assert later.status == "evaluated"
    assert rem.of("apply") == [VM1.lower(), VM1.lower()]


@pytest.mark.azurite
def test_changes_beyond_the_windows_passes_are_deferred_to_a_later_window(emulator, storage_ns):
    from shared.core.events import DeferredEvent

    emu = emulator()
    ctx = make_ctx(emu, storage_ns)
    rem = RecordingRemediation("unchanged")
    p = processor(ctx, rem, clock_skew_seconds=0)
    future = datetime.now(UTC) + timedelta(seconds=1)  # changes after every pass's read
    assert p.handle(arm_event("Microsoft.Compute/virtualMachines/write", VM1,
                              at=future)).status == "evaluated"
    assert p.handle(arm_event("Microsoft.Compute/virtualMachines/write", VM1,
                              at=future)).status == "evaluated"
    third = arm_event("Microsoft.Compute/virtualMachines/write", VM1, at=future)
    with pytest.raises(DeferredEvent):
        p.handle(third)  # Event Grid will deliver it again
    assert len(rem.of("apply")) == 2
    later = EventProcessor(ctx, remediation=rem, identity=OWN_IDENTITY,
                           config=EventConfig(window_seconds=60, clock_skew_seconds=0),
                           now=lambda: datetime.now(UTC) + timedelta(seconds=120))
    assert later.handle(third).status == "evaluated"  # the retry, in a later window
    assert len(rem.of("apply")) == 3


@pytest.mark.azurite
def test_old_event_after_newer_change_reads_current_state(emulator, storage_ns, arm_clients):
    """vm2's NIC leaves the pool (newer change); the old LB write event arrives afterwards: the
    pass reads the current pool, so vm2 is not remediated for a membership it no longer has."""
    emu = emulator()
    c = arm_clients(emu)
    ctx = make_ctx(emu, storage_ns)
    rem = RecordingRemediation()
    p = processor(ctx, rem)
    old_lb_write = arm_event("Microsoft.Network/loadBalancers/write", LB_ID, at=ago(120))
    nic = c.network.network_interfaces.get("rg-test", "vm2-nic")
    nic.ip_configurations[0].load_balancer_backend_address_pools = []
    c.network.network_interfaces.begin_create_or_update("rg-test", "vm2-nic", nic).result()
    newer = arm_event("Microsoft.Network/networkInterfaces/write", NIC2, at=ago(60))
    r_new = p.handle(newer)
    r_old = p.handle(old_lb_write)
    assert r_new.status == "evaluated" and r_new.findings == []  # vm2 no longer exposed
    assert VM2.lower() not in rem.of("apply")
    assert r_old.status in ("evaluated", "coalesced")
    assert VM2 not in r_old.vm_ids and VM2.lower() not in rem.of("apply")
    assert rem.of("apply") == [VM1.lower()]


@pytest.mark.azurite
def test_own_writes_are_evaluated_but_never_remediated(emulator, storage_ns):
    emu = emulator()
    ctx = make_ctx(emu, storage_ns)
    rem = RecordingRemediation()
    p = processor(ctx, rem)
    results = p.handle_batch([
        arm_event("Microsoft.Compute/virtualMachines/write", VM1, caller="own", at=ago(30)),
        arm_event("Microsoft.Network/networkInterfaces/write", NIC2, caller="own", at=ago(30)),
        arm_event("Microsoft.Compute/virtualMachines/start/action", VM1, caller="own",
                  at=ago(10)),
    ])
    assert all(r.own_write for r in results)
    assert results[0].status == "evaluated" and results[0].findings  # still verified
    assert rem.calls == []
    (entry,) = ctx.journal.history(VM1, 5, action="event")[-1:]
    assert entry.after["own_write"] is True and "no remediation" in entry.after["note"]
    assert emu.requests.writes() == []


@pytest.mark.azurite
def test_journal_recognises_our_write_when_claims_are_missing(emulator, storage_ns):
    from shared.core.journal import RESULT_SUCCEEDED, JournalEntry, Trigger

    emu = emulator()
    ctx = make_ctx(emu, storage_ns)
    ctx.journal.append(JournalEntry(action="attach-nic", result=RESULT_SUCCEEDED,
                                    trigger=Trigger("timer"), operation_id="op-9", vm_id=VM1))
    rem = RecordingRemediation()
    raw = arm_event("Microsoft.Compute/virtualMachines/write", VM1, at=datetime.now(UTC))
    raw["data"]["claims"] = {}
    raw["data"]["authorization"] = {}
    result = processor(ctx, rem).handle(raw)
    assert result.own_write and rem.calls == []
    # With a caller named in the claims that is not us, the journal does not decide.
    rem2 = RecordingRemediation()
    other = processor(ctx, rem2).handle(arm_event("Microsoft.Compute/virtualMachines/write",
                                                  VM1, at=datetime.now(UTC)))
    assert not other.own_write


@pytest.mark.azurite
def test_managed_nic_deleted_event_maps_to_its_vm(emulator, storage_ns):
    emu = emulator()
    ctx = make_ctx(emu, storage_ns)
    rem = RecordingRemediation()
    p = processor(ctx, rem)
    gone_nic = f"{P}/Microsoft.Network/networkInterfaces/vm1-hairpin-nic"
    result = p.handle(arm_event("Microsoft.Network/networkInterfaces/delete", gone_nic,
                                at=ago(30)))
    assert result.status == "evaluated" and result.vm_ids == [VM1]
    assert rem.of("apply") == [VM1.lower()]


@pytest.mark.azurite
def test_lb_delete_reevaluates_vms_with_verified_routes(emulator, storage_ns):
    from shared.core.journal import OPEN_VERIFIED_ROUTE

    emu = emulator()
    ctx = make_ctx(emu, storage_ns)
    ctx.journal.open_record(OPEN_VERIFIED_ROUTE, VM2, "10.0.1.200", operation_id="op-1")
    other_lb = f"{P}/Microsoft.Network/loadBalancers/ilb-old"
    rem = RecordingRemediation()
    result = processor(ctx, rem).handle(
        arm_event("Microsoft.Network/loadBalancers/delete", other_lb, at=ago(30)))
    assert result.vm_ids == [VM2]
    # vm2 holds a verified route for a VIP no frontend serves now, and no managed NIC.
    assert any(d.startswith("stale_routes:10.0.1.200") for d in result.drift[VM2])


@pytest.mark.azurite
def test_vm_gone_is_permanent_journalled_and_acknowledged(emulator, storage_ns):
    emu = emulator()
    ctx = make_ctx(emu, storage_ns)
    rem = RecordingRemediation()
    vm9 = f"{P}/Microsoft.Compute/virtualMachines/vm9"
    result = processor(ctx, rem).handle(
        arm_event("Microsoft.Compute/virtualMachines/write", vm9, at=ago(30)))
    assert result.status == "gone" and rem.calls == []
    (entry,) = ctx.journal.history(vm9, 5, action="event")
    assert entry.result == "skipped" and "no longer exists" in entry.after["note"]


@pytest.mark.azurite
def test_transient_failure_raises_and_the_redelivery_is_processed(emulator, storage_ns):
    from azure.core.exceptions import HttpResponseError

    emu = emulator()
    ctx = make_ctx(emu, storage_ns)
    ctx.polling_interval = 0
    rem = RecordingRemediation()
    raw = arm_event("Microsoft.Compute/virtualMachines/write", VM1, at=ago(30))
    emu.faults.add("GET", r"/virtualMachines/vm1$", 503, times=None)
    with pytest.raises(HttpResponseError):
        processor(ctx, rem).handle(raw)
    assert rem.calls == []
    emu.faults.clear()
    again = processor(ctx, rem).handle(raw)  # Event Grid delivers it again
    assert again.status == "evaluated" and rem.of("apply") == [VM1.lower()]


@pytest.mark.azurite
def test_rejected_event_is_journalled_and_acknowledged(emulator, storage_ns):
    emu = emulator()
    ctx = make_ctx(emu, storage_ns)
    rem = RecordingRemediation()
    raw = arm_event("Microsoft.Compute/virtualMachines/write", VM1)
    raw["data"]["resourceUri"] = "not-an-id"
    raw["subject"] = "not-an-id"
    result = processor(ctx, rem).handle(raw)
    assert result.status == "rejected"
    (entry,) = ctx.journal.history(None, 5, action="event-rejected")
    assert "not an ARM resource id" in entry.error and entry.trigger.event_id == raw["id"]
    assert rem.calls == [] and emu.requests.count() == 0


@pytest.mark.azurite
def test_audit_mode_records_findings_and_remediates_nothing(emulator, storage_ns):
    emu = emulator()
    ctx = make_ctx(emu, storage_ns, HAIRPIN_MODE="audit")
    rem = RecordingRemediation()
    result = processor(ctx, rem).handle(
        arm_event("Microsoft.Compute/virtualMachines/write", VM1, at=ago(30)))
    assert result.findings and rem.calls == []
    (entry,) = ctx.journal.history(VM1, 5, action="event")
    assert "audit mode" in entry.after["note"]


def test_without_storage_duplicates_are_caught_in_memory(emulator):
    emu = emulator()
    ctx = make_ctx(emu)
    rem = RecordingRemediation()
    p = processor(ctx, rem)
    raw = arm_event("Microsoft.Compute/virtualMachines/write", VM1, at=ago(30))
    assert p.handle(raw).status == "evaluated"
    assert p.handle(raw).status == "duplicate"
    assert rem.of("apply") == [VM1.lower()]
