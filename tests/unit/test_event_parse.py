"""Event Grid subscription events, parsed (pure): every handled operation in both schemas, own
identity from claims and evidence, irrelevant, malformed and fuzzed payloads, and the template's
event subscription filters.

Payloads are built from the documented system-topic schema (Azure Resource Manager events:
`subject`, `data.resourceUri`, `data.operationName`, `data.claims`, `data.authorization`,
`data.status`, ...)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.core import arm_ids
from shared.core import events as ev
from shared.core.events.types import (
    ACTION_SUCCESS,
    ALL_HANDLED_OPERATIONS,
    DELETE_SUCCESS,
    HANDLED_EVENT_TYPES,
    WRITE_SUCCESS,
)
from shared.core.vocab import ScopeKind
from shared.services.events import EventProcessor
from tests.support.events import (
    NIC1,
    OWN,
    OWN_IDENTITY,
    USER,
    VM1,
    VM2,
    ListHandler,
    NoArm,
    RecordingRemediation,
    arm_event,
    as_cloud_event,
    resource_for,
    type_for,
)
from tests.support.fixtures_emulator import LB_ID, SUB, VNET_ID
from tests.support.paths import ROOT

# --------------------------------------------------------------------------- pure parsing

@pytest.mark.parametrize("operation", ALL_HANDLED_OPERATIONS)
@pytest.mark.parametrize("schema", ["eventgrid", "cloudevents"])
def test_every_handled_operation_parses_with_its_scope(operation, schema):
    raw = arm_event(operation, resource_for(operation))
    if schema == "cloudevents":
        raw = as_cloud_event(raw)
    parsed = ev.parse_event(raw)
    assert isinstance(parsed, ev.ResourceEvent), parsed
    assert parsed.operation == operation and parsed.event_type == type_for(operation)
    assert parsed.schema == schema
    assert parsed.subscription_id == SUB
    assert parsed.caller.object_id == USER["oid"] and parsed.caller.principal_type == "User"
    assert parsed.event_time is not None and parsed.event_time.tzinfo is not None
    scope = parsed.scope
    child = operation.count("/") == 3 and not operation.endswith("/action")  # lb/{child}/write
    assert parsed.is_child == child
    if operation.startswith("Microsoft.Compute"):
        assert scope.vm_ids == {VM1.lower()} and scope.kind is ScopeKind.VM
    elif "networkInterfaces" in operation:
        assert scope.nic_ids == {NIC1.lower()} and scope.deleted == operation.endswith("delete")
    elif "virtualNetworks" in operation:
        # A subnet write re-reads its VNet; the subnet stays the subject.
        assert scope.vnet_ids == {VNET_ID.lower()} and scope.kind is ScopeKind.VNET
        assert parsed.resource_id == resource_for(operation) and not scope.deleted
    else:
        # A child's delete leaves its load balancer: only the LB's own delete is "deleted".
        assert scope.lb_ids == {LB_ID.lower()} and scope.kind is ScopeKind.LB
        assert scope.deleted == (operation.endswith("delete") and not child)
        assert arm_ids.same(parsed.target_id, LB_ID)


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


@pytest.mark.parametrize("child, name", [
    ("backendAddressPools", "be"), ("loadBalancingRules", "rule-a"),
    ("frontendIPConfigurations", "fe-a"), ("inboundNatRules", "rdp")])
@pytest.mark.parametrize("verb", ["write", "delete"])
def test_child_resource_event_scopes_its_load_balancer(child, name, verb):
    # ARM raises a child's write with the child as subject and the child's own operation.
    subject = f"{LB_ID}/{child}/{name}"
    raw = arm_event(f"Microsoft.Network/loadBalancers/{child}/{verb}", subject)
    parsed = ev.parse_event(raw)
    assert isinstance(parsed, ev.ResourceEvent), parsed
    assert parsed.resource_id == subject and arm_ids.same(parsed.target_id, LB_ID)
    assert parsed.resource_type == ev.T_LB and parsed.key == LB_ID.lower()
    assert parsed.scope == ev.Scope(lb_ids=frozenset({LB_ID.lower()}))


def test_subnet_write_scopes_its_virtual_network():
    subnet = f"{VNET_ID}/subnets/default"
    parsed = ev.parse_event(arm_event("Microsoft.Network/virtualNetworks/subnets/write", subnet))
    assert isinstance(parsed, ev.ResourceEvent), parsed
    assert parsed.scope == ev.Scope(vnet_ids=frozenset({VNET_ID.lower()}))
    assert parsed.key == subnet.lower()  # one subnet's resolution does not cover another's


@pytest.mark.parametrize("operation, subject", [
    # a parent's operation with a child subject, and a child's operation on its parent
    ("Microsoft.Network/loadBalancers/write", f"{LB_ID}/backendAddressPools/be"),
    ("Microsoft.Network/loadBalancers/backendAddressPools/write", LB_ID),
    ("Microsoft.Network/loadBalancers/loadBalancingRules/delete", f"{LB_ID}/probes/p"),
])
def test_operation_and_subject_type_must_agree(operation, subject):
    parsed = ev.parse_event(arm_event(operation, subject))
    assert isinstance(parsed, ev.Rejected) and "resource" in parsed.reason, parsed


@pytest.mark.parametrize("operation", [
    "Microsoft.Network/loadBalancers/probes/write",
    "Microsoft.Network/networkInterfaces/ipConfigurations/write",
    "Microsoft.Compute/virtualMachines/extensions/write",
    "Microsoft.Network/virtualNetworks/write",
])
def test_children_and_writes_that_change_nothing_here_are_ignored(operation):
    raw = arm_event(operation, f"{LB_ID}/probes/p")
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
    raw = arm_event(op, resource_for(op))
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


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=mutated_events() | _json_values())
def test_fuzzed_events_never_crash_and_malformed_ones_write_nothing(raw):
    parsed = ev.parse_event(raw)
    assert isinstance(parsed, ev.ResourceEvent | ev.Ignored | ev.Rejected)
    if isinstance(parsed, ev.ResourceEvent):
        return  # a valid event (the mutation kept it valid): handled by the service tests
    ctx, remediation = NoArm(), RecordingRemediation()
    processor = EventProcessor(ctx, remediation=remediation, identity=OWN_IDENTITY)
    handler = ListHandler()
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
