"""Event-driven re-evaluation: Event Grid events -> current state -> remediation.

Parts: `processor` (EventProcessor, the host process's EventHost, handle_event), `claims`
(duplicates, burst passes, subject memos on the state table), `scope` (reading state, scope,
own writes), `evaluation` (drift through `shared.core.drift`, the remediation call).
"""

from shared.services.events.claims import EventMemo
from shared.services.events.processor import (
    EventHost,
    EventProcessor,
    default_host,
    handle_event,
    install_host,
)
from shared.services.events.scope import StateReader, is_gone, is_transient

__all__ = ["EventHost", "EventMemo", "EventProcessor", "StateReader", "default_host",
           "handle_event", "install_host", "is_gone", "is_transient"]
