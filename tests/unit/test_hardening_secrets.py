"""Hardening (issue 12 item 7): no secret in the text of any settings or context object.

Every object reachable from a Settings, a ServiceContext (storage attached from a connection
string, notifications with a topic key), an EventHost and an EventProcessor is rendered with
repr(), str() and format(); none may contain the canary secrets."""

from __future__ import annotations

import base64
import dataclasses

from shared.core.events import OwnIdentity
from shared.services.context import ServiceContext
from shared.services.events.processor import EventHost, EventProcessor
from shared.services.notify import Notifier
from shared.settings import Settings
from shared.storage.clients import StorageClients
from shared.storage.journal import Journal
from shared.storage.locks import LockManager
from shared.storage.reports import ReportStore

ACCOUNT_CANARY = base64.b64encode(b"canary-account-key-0123456789abcdef").decode()
TOPIC_CANARY = "canary-topic-key-9f8e7d6c"
CANARIES = (ACCOUNT_CANARY, TOPIC_CANARY, "canary-account-key")
CONNECTION = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
              f"AccountKey={ACCOUNT_CANARY};BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;"
              "TableEndpoint=http://127.0.0.1:2/devstoreaccount1;"
              "QueueEndpoint=http://127.0.0.1:3/devstoreaccount1;")
ENV = {"HAIRPIN_STORAGE_CONNECTION": CONNECTION,
       "HAIRPIN_NOTIFY_TOPIC_ENDPOINT": "https://topic.example/api/events",
       "HAIRPIN_NOTIFY_TOPIC_KEY": TOPIC_CANARY}


def ours(value) -> bool:
    return type(value).__module__.startswith("shared.")


def parts(value) -> list:
    """What one of our objects holds: the fields its repr shows (a dataclass), else __dict__
    and __slots__ (its repr shows none of them, but they are rendered in turn)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [getattr(value, f.name) for f in dataclasses.fields(value) if f.repr]
    found = list(getattr(value, "__dict__", {}).values())
    for slot in getattr(type(value), "__slots__", ()):
        if hasattr(value, slot):
            found.append(getattr(value, slot))
    return found


def rendered(root, depth: int = 5) -> list[tuple[str, str]]:
    """(type name, text) of `root` and of each of our objects reachable from it."""
    out, todo, seen = [], [(root, depth)], set()
    while todo:
        value, left = todo.pop()
        if id(value) in seen or left < 0:
            continue
        seen.add(id(value))
        if isinstance(value, dict | list | tuple | set | frozenset):
            items = value.values() if isinstance(value, dict) else value
            todo += [(v, left - 1) for v in items if ours(v) or isinstance(v, dict | list)]
            continue
        for text in (repr(value), str(value), format(value, "")):
            out.append((type(value).__name__, text))
        if ours(value):
            todo += [(v, left - 1) for v in parts(value)
                     if ours(v) or isinstance(v, dict | list | tuple | set | frozenset)]
    return out


def leaks(root) -> list[str]:
    return [name for name, text in rendered(root) if any(c in text for c in CANARIES)]


def test_hardening_settings_render_no_secret():
    settings = Settings.from_env(ENV)
    assert settings.storage_connection == CONNECTION  # the secret is there, only not shown
    assert leaks(settings) == []


def context(settings: Settings) -> ServiceContext:
    """As build_context composes it, without the tables and containers it would create."""
    storage = StorageClients.from_connection_string(settings.storage_connection)
    return ServiceContext(settings, storage=storage, journal=Journal(storage.table),
                          locks=LockManager(storage.blob), reports=ReportStore(storage.blob),
                          notifier=Notifier.from_settings(settings))


def test_hardening_service_context_renders_no_secret():
    ctx = context(Settings.from_env(ENV))
    assert ctx.storage is not None and ctx.notifier is not None
    assert leaks(ctx) == []


def test_hardening_event_host_and_processor_render_no_secret():
    settings = Settings.from_env(ENV)
    host = EventHost(settings, OwnIdentity())
    ctx = context(settings)
    assert leaks(host) == [] and leaks(EventProcessor(ctx, identity=OwnIdentity())) == []
