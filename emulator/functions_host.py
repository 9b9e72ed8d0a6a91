"""The Functions host's queue listener, for tests and benchmarks (Core Tools cannot be installed
here): it drives a queue-triggered handler against a real Azurite queue with the documented
semantics and host.json's `extensions.queues` settings. Never part of the product: in Azure
the host itself does this.

What it models (docs/operations.md, "Fleet sweeps", has the sources):
- messages are received `batchSize` at a time, with a new batch fetched once the messages in
  flight drop to `newBatchThreshold` (so at most batchSize + newBatchThreshold at once);
- a received message is invisible for 10 minutes, renewed while its invocation runs (`renew`
  False, with a short `lease_s`, makes a long invocation's message reappear: a visibility
  timeout expiry);
- success deletes the message; an exception makes it visible again after `visibilityTimeout`,
  and a message that failed on its `maxDequeueCount`th delivery moves to `<queue>-poison`;
- an empty queue is polled again after a growing wait, up to `maxPollingInterval`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from azure.core.exceptions import ResourceNotFoundError

log = logging.getLogger("emulator.functions_host")

HOST_JSON = Path(__file__).resolve().parent.parent / "host.json"
VISIBILITY_S = 600  # the host's own visibility for a message in process (WebJobs QueueListener)

# handler(body: str, dequeue_count: int) -> None; raising = the invocation failed
Handler = Callable[[str, int], None]


def _seconds(hhmmss: str) -> float:
    h, m, s = hhmmss.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


@dataclass(frozen=True)
class QueueSettings:
    batch_size: int = 16
    new_batch_threshold: int = 8
    max_dequeue_count: int = 5
    visibility_timeout_s: float = 0.0
    max_polling_interval_s: float = 60.0

    @classmethod
    def from_host_json(cls, path: Path = HOST_JSON, **overrides) -> QueueSettings:
        queues = (json.loads(path.read_text()).get("extensions") or {}).get("queues") or {}
        batch = int(queues.get("batchSize", 16))
        values = dict(
            batch_size=batch,
            new_batch_threshold=int(queues.get("newBatchThreshold", batch // 2)),
            max_dequeue_count=int(queues.get("maxDequeueCount", 5)),
            visibility_timeout_s=_seconds(queues.get("visibilityTimeout", "00:00:00")),
            max_polling_interval_s=_seconds(queues.get("maxPollingInterval", "00:01:00")))
        values.update(overrides)
        return cls(**values)


class QueueHost:
    """`QueueHost(queue_client, handler, settings).run(until=...)` in one thread or process."""

    def __init__(self, queue, handler: Handler, settings: QueueSettings | None = None, *,
                 poison=None, lease_s: float = VISIBILITY_S, renew: bool = True,
                 min_poll_s: float = 0.1) -> None:
        self.queue, self.poison, self.handler = queue, poison, handler
        self.settings = settings or QueueSettings.from_host_json()
        self.lease_s, self.renew, self.min_poll_s = lease_s, renew, min_poll_s
        self.invocations = 0
        self.failures = 0
        self._lock = threading.Lock()

    def run(self, until: Callable[[], bool], timeout: float = 600.0) -> None:
        """Listen until `until()` is true with nothing in flight (or `timeout` passes)."""
        s = self.settings
        pool = ThreadPoolExecutor(max_workers=s.batch_size + s.new_batch_threshold,
                                  thread_name_prefix="invocation")
        inflight: set[Future] = set()
        end, wait = time.monotonic() + timeout, self.min_poll_s
        try:
            while time.monotonic() < end:
                inflight = {f for f in inflight if not f.done()}
                if not inflight and until():
                    return
                if len(inflight) > s.new_batch_threshold:
                    time.sleep(0.02)
                    continue
                got = list(self.queue.receive_messages(messages_per_page=s.batch_size,
                                                       visibility_timeout=int(self.lease_s),
                                                       max_messages=s.batch_size))
                for msg in got:
                    inflight.add(pool.submit(self.deliver, msg))
                if got:
                    wait = self.min_poll_s
                else:  # empty: back off, as the listener does, up to maxPollingInterval
                    time.sleep(wait)
                    wait = min(wait * 2, max(s.max_polling_interval_s, self.min_poll_s))
            raise TimeoutError(f"queue {self.queue.queue_name} not drained in {timeout:.0f} s")
        finally:
            pool.shutdown(wait=True)

    def deliver(self, msg) -> None:
        """One invocation for a received message, and what the host does after it."""
        receipt = [msg.pop_receipt]
        stop = threading.Event()
        renewer = None
        if self.renew:
            renewer = threading.Thread(target=self._renew, args=(msg, receipt, stop), daemon=True)
            renewer.start()
        body = msg.content.decode() if isinstance(msg.content, bytes) else msg.content
        try:
            with self._lock:
                self.invocations += 1
            self.handler(body, msg.dequeue_count)
        except Exception as exc:  # noqa: BLE001 - the host logs and retries
            with self._lock:
                self.failures += 1
            log.warning("invocation of %s failed (delivery %d): %s", msg.id, msg.dequeue_count,
                        exc)
            stop.set()
            self._release(msg, receipt[0], body)
            return
        finally:
            stop.set()
            if renewer is not None:
                renewer.join()
        try:
            self.queue.delete_message(msg.id, receipt[0])
        except ResourceNotFoundError:  # its visibility expired and someone else has it now
            log.info("message %s was received again meanwhile: not deleted here", msg.id)

    def _release(self, msg, receipt: str, body: str) -> None:
        try:
            if msg.dequeue_count >= self.settings.max_dequeue_count and self.poison is not None:
                self.poison.send_message(body)
                self.queue.delete_message(msg.id, receipt)
            else:
                self.queue.update_message(
                    msg.id, receipt, visibility_timeout=int(self.settings.visibility_timeout_s))
        except ResourceNotFoundError:
            pass

    def _renew(self, msg, receipt: list[str], stop: threading.Event) -> None:
        while not stop.wait(self.lease_s / 2):
            try:
                receipt[0] = self.queue.update_message(
                    msg.id, receipt[0], visibility_timeout=int(self.lease_s)).pop_receipt
            except ResourceNotFoundError:
                return
