"""Event-driven re-evaluation: Event Grid events -> current state -> remediation.

Parts: `processor` (EventProcessor, handle_event), `claims` (duplicates, burst passes, subject
memos on the state table), `scope` (reading state, scope, own writes), `evaluation`.
"""

from shared.services.events.claims import prune_state
from shared.services.events.processor import EventProcessor, handle_event, processor_from_env
from shared.services.events.scope import StateReader, is_gone, is_transient

__all__ = ["EventProcessor", "StateReader", "handle_event", "is_gone", "is_transient",
           "processor_from_env", "prune_state"]
