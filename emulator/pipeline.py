"""One ARM request through the stages ARM applies, in its order: route, authenticate (bearer
token), api-version, authorize (RBAC), subscription throttling, the resource provider's own
throttling (with a latency profile), then the dispatch under the model lock; injected faults
(`emulator.faults`) act between throttling and dispatch, a profile's latency just before it. Every
request is logged; a served write also becomes its Event Grid system-topic event."""

from __future__ import annotations

import json
import sys
import time
import traceback
import uuid
from urllib.parse import parse_qsl, urlsplit

from emulator.errors import ArmError
from emulator.events import make_event
from emulator.faults import Fault
from emulator.http import DROP
from emulator.identity import ARM_AUDIENCES, Identity
from emulator.metrics import METRICS_AUDIENCES
from emulator.rbac import authorize
from emulator.reqlog import RequestEntry
from emulator.routes import Route, parse
from emulator.throttle import kind_of

__all__ = ["RequestPipeline"]


class RequestPipeline:
    def __init__(self, emu) -> None:
        self.emu = emu

    def handle(self, method: str, target: str, headers, raw: bytes):
        """One ARM request -> (status, headers, body) or DROP."""
        url = urlsplit(target)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        route = parse(url.path)
        if route is not None:
            route.path = url.path
            route.api_version = query.get("api-version", "2024-01-01")
        entry = RequestEntry(method, url.path, url.query,
                             route.resource_type if route else None,
                             route.rbac_action(method) if route else None,
                             if_match=headers.get("If-Match"))
        fault = None
        limit_headers: dict = {}
        try:
            self._admit(route, url.path, query, headers, entry)
            limit_headers = self._throttle(route, method, entry)
            stage = self.emu.profile_stage  # the latency profile's part, when one is on
            if stage is not None:
                limit_headers.update(stage.admit(method, route))
            fault = self.emu.faults.take(method, url.path)
            if fault is not None and self._inject(fault, entry) is DROP:
                return DROP
            body = json.loads(raw) if raw else {}
            if stage is not None:
                stage.wait(method, route)  # outside the model lock: answers overlap
            with self.emu.lock:
                status, h, out = self.emu.dispatcher.dispatch(
                    method, route, query, headers, body, entry,
                    fault if fault and fault.lro_failed else None)
                if stage is not None:
                    h = stage.time_operation(method, route, h)
        except ArmError as err:
            status, h, out = err.status, err.headers, err.body()
        except json.JSONDecodeError as err:
            status, h, out = 400, {}, {"error": {
                "code": "InvalidRequestContent",
                "message": f"The request content is not valid JSON: {err}"}}
        except Exception as err:  # a bug in the emulator: say so, ARM-shaped
            traceback.print_exc(file=sys.stderr)
            status, h, out = 500, {}, {"error": {"code": "InternalServerError",
                                                 "message": repr(err)}}
        entry.status = status
        self.emu.requests.record(entry)
        self._event(method, route, entry, status, fault)
        return status, {**limit_headers, **h}, out

    def _admit(self, route: Route | None, path: str, query: dict, headers,
               entry: RequestEntry) -> None:
        metrics = route is not None and route.kind == "metrics_batch"
        ident = self.emu.tokens.verify(headers.get("Authorization"),
                                       METRICS_AUDIENCES if metrics else ARM_AUDIENCES)
        entry.principal, entry.client_id = ident.principal_id, ident.client_id
        if route is None:
            raise ArmError(404, "InvalidResourceType", f"No route for '{path}'.")
        if route.kind != "operation" and "api-version" not in query:
            raise ArmError(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        # Resource Graph is a tenant-level query (ARM filters its rows by read access):
        # a grant at any scope lets the query through.
        authorize(self.emu.roles, ident, [entry.action], route.scope if metrics else path,
                  any_scope=route.kind == "graph")

    def _throttle(self, route: Route, method: str, entry: RequestEntry) -> dict:
        # Azure Monitor's batch API is not an ARM request: ARM's buckets do not count it.
        if self.emu.throttle is None or not route.subscription or route.kind == "metrics_batch":
            return {}
        ok, limit_headers = self.emu.throttle.take(route.subscription, method, entry.principal)
        if not ok:
            kind = {"reads": "Read", "deletes": "Delete"}.get(kind_of(method), "Write")
            raise ArmError(
                429,
                "TooManyRequests",
                "The request is being throttled as the limit has been reached for "
                f"operation type - {kind}.",
                limit_headers,
            )
        return limit_headers

    def _inject(self, fault: Fault, entry: RequestEntry):
        entry.fault = fault.changes_the_answer
        if fault.action is not None:
            fault.action()
        if fault.delay_seconds:
            time.sleep(fault.delay_seconds)
        if fault.drop_connection:
            entry.status = 0  # 0 = no answer at all
            self.emu.requests.record(entry)
            return DROP
        if fault.status:
            h = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after else {}
            raise ArmError(fault.status, fault.code, fault.text(), h)
        return None

    def _event(self, method: str, route: Route | None, entry: RequestEntry, status: int,
               fault: Fault | None) -> None:
        if not (entry.is_write and entry.principal and route is not None and route.name):
            return
        # a failed LRO or a rejected write is a Failure event; a 204 (nothing to delete) none
        failed = status in (400, 409) or (status < 300 and fault is not None and fault.lro_failed)
        if not ((200 <= status < 300 and status != 204) or failed):
            return
        rid = route.resource_id
        if route.child and route.kind in ("child", "child_action"):
            rid = f"{rid}/{route.child}/{route.child_name}"
        ident = self.emu.tokens.find(principal_id=entry.principal) or Identity(
            entry.principal, entry.client_id or "", "unknown"
        )
        event = make_event(method, rid, entry.action, not failed, route.subscription, ident,
                           str(uuid.uuid4()))
        self.emu.events.append(event)
        if self.emu.on_event is not None:
            self.emu.on_event(event)
