"""Role-based access as ARM enforces it: a grant per identity (or "*"), at a scope and below
(role assignments are inherited by child scopes); a request is refused with ARM's 403
`AuthorizationFailed` when an action it needs (its own and the linked ones) is not granted."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping

from emulator.errors import ArmError
from emulator.identity import Identity

__all__ = ["granted_at", "authorize", "authorize_linked", "permissions_at"]


def granted_at(grant, scope: str | None) -> set[str]:
    """Lowercased action patterns one roles entry grants at `scope` (an ARM path).

    A plain collection grants its actions at every scope. A mapping {scope: actions} grants
    each set at its scope and below (ARM role assignments are inherited by child scopes);
    scope "/" is the whole tenant. `scope=None` means "at any scope" (Resource Graph)."""
    if not isinstance(grant, Mapping):
        return {a.lower() for a in grant}
    target = (scope or "").rstrip("/").lower()
    out: set[str] = set()
    for prefix, actions in grant.items():
        base = prefix.rstrip("/").lower()
        if scope is None or base == "" or target == base or target.startswith(base + "/"):
            out |= {a.lower() for a in actions}
    return out


def authorize(roles: dict | None, ident: Identity, actions: list, scope: str,
              any_scope: bool = False) -> None:
    """Raise 403 unless every action is granted to the identity at `scope` (no roles: all)."""
    if roles is None:
        return
    granted = set()
    for key in (ident.principal_id, ident.client_id, ident.name, "*"):
        granted |= granted_at(roles.get(key, ()), None if any_scope else scope)
    for action in actions:
        if action and not any(fnmatch.fnmatchcase(action.lower(), g) for g in granted):
            raise ArmError(
                403,
                "AuthorizationFailed",
                f"The client '{ident.client_id}' with object id '{ident.principal_id}' "
                f"does not have authorization to perform action '{action}' over "
                f"scope '{scope}' or the scope is invalid. If access was recently "
                f"granted, please refresh your credentials.",
            )


def permissions_at(roles: dict | None, ident: Identity, scope: str) -> list[dict]:
    """The caller's permissions at `scope` as `Microsoft.Authorization/permissions` lists them:
    one entry per grant that reaches the scope (no roles: everything)."""
    if roles is None:
        return [{"actions": ["*"], "notActions": [], "dataActions": [], "notDataActions": []}]
    out = []
    for key in (ident.principal_id, ident.client_id, ident.name, "*"):
        actions = granted_at(roles.get(key, ()), scope)
        if actions:
            out.append({"actions": sorted(actions), "notActions": [], "dataActions": [],
                        "notDataActions": []})
    return out


def authorize_linked(roles: dict | None, ident: Identity, action: str, scope: str,
                     linked: list) -> None:
    """Raise 403 `LinkedAuthorizationFailed` unless every linked access (`.action` at
    `.scope`, the referenced resource) is granted; `action` at `scope` is the request's own."""
    if roles is None:
        return
    for access in linked:
        try:
            authorize(roles, ident, [access.action], access.scope)
        except ArmError:
            raise ArmError(
                403,
                "LinkedAuthorizationFailed",
                f"The client '{ident.client_id}' with object id '{ident.principal_id}' has "
                f"permission to perform action '{action}' on scope '{scope}'; however, it does "
                f"not have permission to perform action '{access.action}' on the linked "
                f"scope(s) '{access.scope}' or the linked scope(s) are invalid.",
            ) from None
