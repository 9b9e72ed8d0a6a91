"""Pure: who may approve a plan, from what App Service Authentication passes to the app.

With App Service Authentication (Easy Auth) on, the platform validates the caller's Entra ID
token and hands the app its claims in `x-ms-client-principal`: base64 of UTF-8 JSON
`{"auth_typ", "claims": [{"typ", "val"}], "name_typ", "role_typ"}` (Microsoft Learn,
*Work with user identities in App Service authentication*; the serializer is
Azure/azure-webjobs-sdk-extensions `ClaimsIdentitySlim`/`ClaimSlim`, "the same serialization as
found in EasyAuth"). The platform strips that header from outside requests only while its
auth is on, which it tells the app in `WEBSITE_AUTH_ENABLED` (`Settings.platform_auth_enabled`);
with auth off anyone holding the function key can send the header, so it is not read at all,
as the Functions host itself does (azure-functions-host `AuthenticationLevelHandler`).
Sources and claim names: docs/azure-facts.md, "App Service Authentication".
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass

from shared.core.vocab import ApproverVerdict

__all__ = ["APPROVER_ROLE", "CLIENT_PRINCIPAL_HEADER", "KEY_ONLY_PRINCIPAL",
           "MAX_CLIENT_PRINCIPAL_CHARS", "ClientPrincipal", "ApproverCheck",
           "decode_client_principal", "check_approver"]

APPROVER_ROLE = "Hairpin.Approver"  # infra/approver-app-roles.json declares it
CLIENT_PRINCIPAL_HEADER = "x-ms-client-principal"
# Journalled as the approver when the lab setting lets the key alone approve.
KEY_ONLY_PRINCIPAL = "function-key"
# Bounds the decoding work; far above a principal with a few hundred group claims.
MAX_CLIENT_PRINCIPAL_CHARS = 64 * 1024

# Entra ID through Easy Auth: provider name, and claim types before and after the default
# claims mapping (both are seen: roles arrive as "roles" or as the role URI).
_PROVIDER = "aad"
_OBJECT_ID_TYPES = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")
_ROLE_TYPES = ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role")
_NAME_TYPES = ("name", "preferred_username",
               "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
               "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
               "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
               "azp", "appid")  # an application (client credentials) has no user name
_GUID = re.compile(r"\A[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}\Z")


@dataclass(frozen=True)
class ClientPrincipal:
    """The caller as the platform verified it."""

    object_id: str  # Entra ID object id (a user's or a service principal's)
    name: str | None
    roles: frozenset[str]
    provider: str = _PROVIDER


@dataclass(frozen=True)
class ApproverCheck:
    """The answer to "may this request approve?", with what the journal records."""

    verdict: ApproverVerdict
    principal: ClientPrincipal | None = None
    reason: str = ""

    @property
    def accepted(self) -> bool:
        return self.verdict.accepted

    @property
    def journal_principal(self) -> str:
        return self.principal.object_id if self.principal else KEY_ONLY_PRINCIPAL

    @property
    def journal_name(self) -> str | None:
        return self.principal.name if self.principal else None


def _claims(doc: dict) -> list[tuple[str, str]]:
    claims = doc.get("claims")
    if not isinstance(claims, list):
        raise ValueError("no claims array")
    return [(c["typ"], c["val"]) for c in claims
            if isinstance(c, dict) and isinstance(c.get("typ"), str)
            and isinstance(c.get("val"), str)]


def _first(claims: list[tuple[str, str]], types: tuple[str, ...]) -> str | None:
    for wanted in types:
        for typ, val in claims:
            if typ == wanted and val.strip():
                return val.strip()
    return None


def decode_client_principal(header: str) -> ClientPrincipal:
    """`x-ms-client-principal` -> ClientPrincipal; ValueError saying what is wrong."""
    if len(header) > MAX_CLIENT_PRINCIPAL_CHARS:
        raise ValueError(f"longer than {MAX_CLIENT_PRINCIPAL_CHARS} characters")
    try:
        doc = json.loads(base64.b64decode(header.strip(), validate=True).decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, ValueError, RecursionError):
        raise ValueError("not base64-encoded JSON") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    provider = doc.get("auth_typ")
    if not isinstance(provider, str) or provider.lower() != _PROVIDER:
        raise ValueError(f"identity provider {str(provider)[:40]!r} is not Entra ID ('aad')")
    claims = _claims(doc)
    object_id = _first(claims, _OBJECT_ID_TYPES)
    if object_id is None or not _GUID.match(object_id):
        raise ValueError("no Entra ID object id (oid) claim")
    name_types = tuple(t for t in (doc.get("name_typ"),) if isinstance(t, str)) + _NAME_TYPES
    role_types = tuple(t for t in (doc.get("role_typ"),) if isinstance(t, str)) + _ROLE_TYPES
    roles = frozenset(val for typ, val in claims if typ in role_types)
    return ClientPrincipal(object_id=object_id.lower(), name=_first(claims, name_types),
                           roles=roles)


def check_approver(header: str | None, *, platform_auth_enabled: bool,
                   key_only_allowed: bool, role: str = APPROVER_ROLE) -> ApproverCheck:
    """The one decision on an approval's caller (the function key is the host's check)."""
    principal, unreadable = None, ""
    if platform_auth_enabled and header:
        try:
            principal = decode_client_principal(header)
        except ValueError as exc:
            unreadable = str(exc)
    if principal is not None and role in principal.roles:
        return ApproverCheck(ApproverVerdict.VERIFIED, principal)
    if key_only_allowed:
        return ApproverCheck(ApproverVerdict.KEY_ONLY, principal,
                             "HAIRPIN_ALLOW_KEY_ONLY_APPROVALS: the function key approves")
    if not platform_auth_enabled:
        return ApproverCheck(ApproverVerdict.AUTH_NOT_ENABLED, reason=(
            "approving needs a caller verified by App Service Authentication, which is not "
            "enabled on this app (deploy with an app registration: docs/deploy.md, "
            "'Authentication for approvals'); a client-supplied x-ms-client-principal is "
            "ignored"))
    if not header:
        return ApproverCheck(ApproverVerdict.NOT_SIGNED_IN, reason=(
            f"approving needs an Entra ID bearer token of a principal holding the app role "
            f"{role} (Authorization: Bearer <token for api://<client id>>), besides the "
            "function key"))
    if principal is None:
        return ApproverCheck(ApproverVerdict.UNREADABLE, reason=(
            f"the platform's x-ms-client-principal could not be read: {unreadable}"))
    who = f"{principal.name} ({principal.object_id})" if principal.name else principal.object_id
    return ApproverCheck(ApproverVerdict.MISSING_ROLE, principal, (
        f"{who} does not hold the app role {role}; an owner of the app registration can "
        "assign it (docs/deploy.md, 'Authentication for approvals')"))
