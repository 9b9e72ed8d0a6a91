"""Pure: Event Grid events -> what to re-evaluate: the handled types (`types`), parsing
(`parse`), who made a change and who we are (`identity`), and the event processor's data
(`model`)."""

from shared.core.events.identity import (
    ENV_CLIENT_ID,
    ENV_IDENTITY_RESOURCE_ID,
    ENV_PRINCIPAL_ID,
    Caller,
    OwnIdentity,
    identity_from_jwt,
    identity_from_settings,
    merge_identities,
)
from shared.core.events.model import DeferredEvent, EventConfig, EventResult, TransientEventError
from shared.core.events.parse import (
    T_LB,
    T_NIC,
    T_VM,
    T_VNET,
    Ignored,
    Rejected,
    ResourceEvent,
    Scope,
    is_own_write,
    parse_event,
    scope_of,
)

__all__ = [
    "DeferredEvent", "EventConfig", "EventResult", "TransientEventError", "ENV_CLIENT_ID",
    "ENV_IDENTITY_RESOURCE_ID", "ENV_PRINCIPAL_ID", "T_LB", "T_NIC", "T_VM", "T_VNET", "Caller",
    "Ignored", "OwnIdentity", "Rejected", "ResourceEvent", "Scope", "identity_from_jwt",
    "identity_from_settings", "is_own_write", "merge_identities", "parse_event", "scope_of",
]
