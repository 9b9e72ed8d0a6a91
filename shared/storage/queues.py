"""The work queue that the Functions queue trigger reads: approved fixes (`POST /api/fix`) and
the remediations an Event Grid event hands off, both run by the one worker in function_app.py.

Messages are base64 text, the queue trigger's default encoding (docs/azure-facts.md, "Azure
Functions"). The queue is reached through a connection string or, identity-based, through the
context's `QueueServiceClient`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any

from shared.core.storage_names import StorageNames

__all__ = ["WORK_QUEUE", "queue_client", "queue_sender", "queue_source"]

WORK_QUEUE = StorageNames().fix_queue  # the default prefix's; callers pass the configured one


def queue_client(source: Any, queue: str = WORK_QUEUE):
    """A QueueClient for `queue`, created if missing. `source`: a connection string, or a
    QueueServiceClient (identity-based storage, no keys)."""
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.queue import (
        BinaryBase64DecodePolicy,
        QueueClient,
        TextBase64EncodePolicy,
    )

    policies = {"message_encode_policy": TextBase64EncodePolicy(),
                "message_decode_policy": BinaryBase64DecodePolicy()}
    if isinstance(source, str):
        client = QueueClient.from_connection_string(source, queue, **policies)
    else:
        client = QueueClient(source.url, queue, credential=source.credential, **policies)
    try:
        client.create_queue()
    except ResourceExistsError:
        pass
    return client


def queue_sender(source: Any, queue: str = WORK_QUEUE, *,
                 time_to_live: int | None = None) -> Callable[..., None]:
    """send(message, delay=None) putting one JSON message on `queue`, invisible for `delay`
    seconds; `time_to_live` in seconds (None: the service's default of 7 days)."""
    client = queue_client(source, queue)

    def send(message: dict, delay: int | None = None) -> None:
        client.send_message(json.dumps(message), time_to_live=time_to_live,
                            visibility_timeout=delay or None)

    return send


def queue_source(settings: Any, storage: Any, environ: Mapping[str, str] | None = None) -> Any:
    """Where the queue trigger listens: AzureWebJobsStorage (a connection string, or its
    identity-based form through the storage clients), else the product's storage; None when
    neither is configured."""
    env = os.environ if environ is None else environ
    service = getattr(storage, "queue", None) if storage is not None else None
    return env.get("AzureWebJobsStorage") or settings.storage_connection or service
