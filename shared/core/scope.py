"""Pure: which subscriptions a run covers: the one rule every entry point uses.

An explicit choice (`--subscription`, a request's `subscription_id`) wins; else the configured
scope (HAIRPIN_SUBSCRIPTIONS); else the ambient default (AZURE_SUBSCRIPTION_ID, as the Azure
CLI and SDKs use it). Every entry point calls this one function, so the audit and the
remediation cannot disagree; the order is documented in docs/operations.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from shared.core import arm_ids

__all__ = ["ScopeError", "OutOfScope", "resolve_subscriptions", "in_scope", "check_in_scope",
           "AMBIENT_SUBSCRIPTION"]

AMBIENT_SUBSCRIPTION = "AZURE_SUBSCRIPTION_ID"


class ScopeError(ValueError):
    """No subscription, or one that is not a subscription ID."""


class OutOfScope(ScopeError):
    """A subscription outside the configured scope (HAIRPIN_SUBSCRIPTIONS)."""


def in_scope(subscription_id: str, configured: Iterable[str]) -> bool:
    """The configured subscriptions are an allow-list for every target (empty: no list, every
    subscription the identity can read)."""
    allowed = {s.lower() for s in configured}
    return not allowed or subscription_id.strip().lower() in allowed


def check_in_scope(subscription_id: str, configured: Iterable[str]) -> None:
    if not in_scope(subscription_id, configured):
        raise OutOfScope(f"subscription {subscription_id[:60]} is outside the subscriptions "
                         "this deployment manages (HAIRPIN_SUBSCRIPTIONS)")


def resolve_subscriptions(explicit: Iterable[str] | str | None, configured: Iterable[str],
                          environ: Mapping[str, str]) -> tuple[str, ...]:
    """Lowercase, sorted, unique subscription IDs (empty: none chosen anywhere)."""
    if isinstance(explicit, str):
        explicit = [explicit]
    configured = tuple(configured)
    chosen = [s.strip() for s in explicit or () if s and s.strip()]
    if not chosen:
        chosen = list(configured)
    if not chosen and environ.get(AMBIENT_SUBSCRIPTION, "").strip():
        chosen = [environ[AMBIENT_SUBSCRIPTION].strip()]
    bad = [s for s in chosen if not arm_ids.is_subscription_id(s)]
    if bad:
        raise ScopeError("not a subscription ID (GUID): " + ", ".join(s[:60] for s in bad))
    for s in chosen:  # an explicit choice narrows the configured scope, never widens it
        check_in_scope(s, configured)
    return tuple(sorted({s.lower() for s in chosen}))
