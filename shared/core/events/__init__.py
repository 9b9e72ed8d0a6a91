"""Pure: Event Grid events -> what to re-evaluate: the handled types (`types`), parsing and
own-write recognition (`parse`), and the event processor's data (`model`)."""

from shared.core.events.model import (
    DeferredEvent,
    EventConfig,
    EventResult,
    TransientEventError,
)
from shared.core.events.parse import (
    ENV_CLIENT_ID,
    ENV_IDENTITY_RESOURCE_ID,
    ENV_PRINCIPAL_ID,
    T_LB,
    T_NIC,
    T_VM,
    Caller,
    Ignored,
    OwnIdentity,
    Rejected,
    ResourceEvent,
    Scope,
    identity_from_jwt,
    is_own_write,
    merge_identities,
    own_identity_from_env,
    parse_event,
    scope_of,
)

__all__ = [
    "DeferredEvent", "EventConfig", "EventResult", "TransientEventError", "ENV_CLIENT_ID",
    "ENV_IDENTITY_RESOURCE_ID", "ENV_PRINCIPAL_ID", "T_LB", "T_NIC", "T_VM", "Caller", "Ignored",
    "OwnIdentity", "Rejected", "ResourceEvent", "Scope", "identity_from_jwt", "is_own_write",
    "merge_identities", "own_identity_from_env", "parse_event", "scope_of",
]
