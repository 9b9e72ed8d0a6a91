"""Pure: who made a change, as an event's claims tell it, and the function's own identity.

Recognising our own writes: the caller's `oid` / `appid` / `xms_mirid` claims (and
`data.authorization.evidence.principalId`) compared with the function's managed identity
(`OwnIdentity`, from settings or decoded from our own ARM token). A match does not mean
"skip": the event service still evaluates current state, it only never starts a new
remediation from it (no loop).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.core.events.readers import mapping_of, text_of
from shared.settings import Settings

__all__ = ["Caller", "OwnIdentity", "caller_of", "identity_from_settings", "identity_from_jwt",
           "merge_identities", "ENV_PRINCIPAL_ID", "ENV_CLIENT_ID", "ENV_IDENTITY_RESOURCE_ID"]

# The settings naming the function's own identity (Settings.identity_*).
ENV_PRINCIPAL_ID = "HAIRPIN_IDENTITY_PRINCIPAL_ID"  # object id (claim oid / evidence.principalId)
ENV_CLIENT_ID = "HAIRPIN_IDENTITY_CLIENT_ID"  # application (client) id (claim appid / azp)
ENV_IDENTITY_RESOURCE_ID = "HAIRPIN_IDENTITY_RESOURCE_ID"  # claim xms_mirid

_OID_CLAIMS = ("oid", "http://schemas.microsoft.com/identity/claims/objectidentifier")
_APPID_CLAIMS = ("appid", "azp")
_MIRID_CLAIMS = ("xms_mirid",)
_NAME_CLAIMS = ("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
                "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name", "name", "upn")


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made the change, as the event tells it (any field may be None)."""

    object_id: str | None = None  # oid claim / authorization.evidence.principalId
    app_id: str | None = None  # appid / azp claim
    mi_resource_id: str | None = None  # xms_mirid: the managed identity's resource id
    principal_type: str | None = None  # authorization.evidence.principalType
    name: str | None = None  # UPN or display name (users)

    @property
    def label(self) -> str | None:
        """A short principal for the journal's Trigger (object id first)."""
        return self.object_id or self.app_id or self.mi_resource_id or self.name

    @property
    def known(self) -> bool:
        """Do the claims name a principal at all?"""
        return bool(self.object_id or self.app_id or self.mi_resource_id)

    def as_dict(self) -> dict[str, str | None]:
        return {"object_id": self.object_id, "app_id": self.app_id,
                "mi_resource_id": self.mi_resource_id, "principal_type": self.principal_type,
                "name": self.name}


@dataclass(frozen=True, slots=True)
class OwnIdentity:
    """The function's managed identity. Empty = unknown (nothing is recognised as ours)."""

    principal_id: str | None = None
    client_id: str | None = None
    resource_id: str | None = None

    def __bool__(self) -> bool:
        return bool(self.principal_id or self.client_id or self.resource_id)

    def matches(self, caller: Caller) -> bool:
        def eq(a: str | None, b: str | None) -> bool:
            return bool(a and b) and a.strip().lower() == b.strip().lower()

        return (eq(self.principal_id, caller.object_id) or eq(self.client_id, caller.app_id)
                or (eq(self.resource_id, caller.mi_resource_id)))


def _claim(claims: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    lowered = {str(k).lower(): v for k, v in claims.items()}
    for name in names:
        value = text_of(lowered.get(name.lower()), 512)
        if value:
            return value
    return None


def caller_of(data: Mapping[str, Any]) -> Caller:
    """The caller from an event's `data.claims` and `data.authorization.evidence`."""
    claims = mapping_of(data.get("claims")) or {}
    auth = mapping_of(data.get("authorization")) or {}
    evidence = mapping_of(auth.get("evidence")) or {}
    object_id = _claim(claims, _OID_CLAIMS) or text_of(evidence.get("principalId"), 512)
    return Caller(object_id=object_id, app_id=_claim(claims, _APPID_CLAIMS),
                  mi_resource_id=_claim(claims, _MIRID_CLAIMS),
                  principal_type=text_of(evidence.get("principalType"), 64),
                  name=_claim(claims, _NAME_CLAIMS))


def identity_from_settings(settings: Settings) -> OwnIdentity:
    """`HAIRPIN_IDENTITY_PRINCIPAL_ID`, `HAIRPIN_IDENTITY_CLIENT_ID` (else `AZURE_CLIENT_ID`,
    set for a user-assigned identity), `HAIRPIN_IDENTITY_RESOURCE_ID`."""
    return OwnIdentity(principal_id=text_of(settings.identity_principal_id, 512),
                       client_id=text_of(settings.identity_client_id, 512),
                       resource_id=text_of(settings.identity_resource_id, 512))


def identity_from_jwt(token: str) -> OwnIdentity:
    """The oid/appid/xms_mirid of an access token we were issued (no signature check: it is our
    own token, read only to learn who we are). Empty identity when it cannot be read."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, AttributeError):
        return OwnIdentity()
    if not isinstance(claims, dict):
        return OwnIdentity()
    return OwnIdentity(principal_id=text_of(claims.get("oid"), 512),
                       client_id=text_of(claims.get("appid") or claims.get("azp"), 512),
                       resource_id=text_of(claims.get("xms_mirid"), 1024))


def merge_identities(*identities: OwnIdentity) -> OwnIdentity:
    """First non-empty value of each field."""
    def first(attr: str) -> str | None:
        return next((getattr(i, attr) for i in identities if getattr(i, attr)), None)

    return OwnIdentity(first("principal_id"), first("client_id"), first("resource_id"))
