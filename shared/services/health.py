"""Health report: version, mode, and whether ARM and storage answer (for GET /api/health)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from shared import __version__
from shared.core.scope import resolve_subscriptions
from shared.settings import Settings

log = logging.getLogger(__name__)


def _check(name: str, probe) -> dict:
    try:
        probe()
        return {"reachable": True}
    except Exception as exc:  # reported, never raised: health must answer
        log.warning("health: %s unreachable: %s", name, exc)
        return {"reachable": False, "error": type(exc).__name__}


def health_report(settings: Settings, *, arm_probe=None, storage_probe=None) -> dict:
    """`arm_probe` / `storage_probe` are callables that raise when the service does not answer."""
    checks = {}
    if arm_probe is not None:
        checks["arm"] = _check("ARM", arm_probe)
    if storage_probe is not None:
        checks["storage"] = _check("storage", storage_probe)
    healthy = all(c["reachable"] for c in checks.values())
    return {"status": "ok" if healthy else "degraded", "version": __version__,
            "mode": settings.mode, "checks": checks}


def arm_probe(settings: Settings, environ: Mapping[str, str] | None = None):
    """First page of load balancers in the first subscription of the run's scope (the one rule:
    HAIRPIN_SUBSCRIPTIONS, else AZURE_SUBSCRIPTION_ID): auth + ARM round trip."""
    from shared.azure.clients import AzureClients

    def probe():
        subs = resolve_subscriptions(None, settings.subscriptions,
                                     os.environ if environ is None else environ)
        if not subs:
            raise RuntimeError("no subscription configured (HAIRPIN_SUBSCRIPTIONS or "
                               "AZURE_SUBSCRIPTION_ID)")
        clients = AzureClients(subs[0], arm_endpoint=settings.arm_endpoint, max_retry_after=5)
        next(iter(clients.network.load_balancers.list_all().by_page()), None)

    return probe


def storage_probe(settings: Settings):
    from shared.storage.clients import StorageClients

    def probe():
        if settings.storage_connection:
            clients = StorageClients.from_connection_string(settings.storage_connection)
        else:
            clients = StorageClients.from_env()
        clients.blob.get_service_properties()

    return probe
