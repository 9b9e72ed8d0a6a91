"""Microsoft.ResourceGraph `resources` query over the emulator's store.

`ResourceGraphService.query` serves `POST /providers/Microsoft.ResourceGraph/resources`
(api-version 2021-03-01 / 2022-10-01): it turns the raw ARM documents into ARG rows, runs the
client's KQL text with `emulator.graph.kql`, pages the result (at most 1,000 rows a page,
opaque skip token) and enforces ARG's per-caller quota (15 queries per 5 s window by default),
with the `x-ms-user-quota-*` headers on every answer and 429 + Retry-After past the quota.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from emulator.graph import kql

MAX_PAGE = 1000
# A page's JSON may not exceed 16 MiB ("Guidance for pagination"); past it ARG answers 400
# BadRequest with a ResponsePayloadTooLarge detail (microsoft/ARI#199, Azure/cosmos-explorer#1877).
RESPONSE_LIMIT_BYTES = 16 * 1024 * 1024
COLUMNS = ["id", "name", "type", "tenantId", "kind", "location", "resourceGroup",
           "subscriptionId", "managedBy", "sku", "plan", "properties", "tags", "identity",
           "zones", "extendedLocation"]  # the Resources table's schema
DEFAULT_TENANT = "72f988bf-0000-0000-0000-000000000000"
_INVALID = ("Query is invalid. Please refer to the documentation for the Azure Resource Graph "
            "service and fix the error before retrying.")
_THROTTLED = ("Client application has been throttled and should not attempt to repeat the "
              "request until an amount of time has elapsed. Please see "
              "https://aka.ms/resourcegraph-throttling for help.")


def _support_message() -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
    return (f"Please provide below info when asking for support: timestamp = {now}, "
            f"correlationId = {uuid.uuid4()}.")


def _id_part(resource_id: str, key: str) -> str:
    parts = resource_id.split("/")
    for i, p in enumerate(parts[:-1]):
        if p.lower() == key:
            return parts[i + 1]
    return ""


def to_arg_row(doc: dict, tenant_id: str = DEFAULT_TENANT) -> dict:
    """One raw ARM document as the row ARG's `Resources` table holds for it."""
    rid = doc.get("id", "")
    props = dict(doc.get("properties") or {})  # shallow: rows are read, never written
    rtype = (doc.get("type") or "").lower()
    if rtype == "microsoft.compute/virtualmachines":
        # ARG has no instanceView; it publishes the power state under properties.extended.
        iv = props.pop("instanceView", None) or {}
        for status in iv.get("statuses") or []:
            if str(status.get("code", "")).startswith("PowerState/"):
                state = {k: status[k] for k in ("code", "level", "displayStatus") if k in status}
                extended = dict(props.get("extended") or {})
                extended["instanceView"] = {**(extended.get("instanceView") or {}),
                                            "powerState": state}
                props["extended"] = extended
    return {
        "id": rid,
        "name": doc.get("name", ""),
        "type": rtype,
        "tenantId": tenant_id,
        "kind": doc.get("kind", ""),
        "location": doc.get("location", ""),
        "resourceGroup": _id_part(rid, "resourcegroups").lower(),
        "subscriptionId": _id_part(rid, "subscriptions"),
        "managedBy": doc.get("managedBy", ""),
        "sku": doc.get("sku"),
        "plan": doc.get("plan"),
        "properties": props,
        "tags": doc.get("tags"),
        "identity": doc.get("identity"),
        "zones": doc.get("zones"),
        "extendedLocation": doc.get("extendedLocation"),
    }


def _column_type(values: list[Any]) -> str:
    """ARG table-format column type from the values seen in that column."""
    kinds = set()
    for v in values:
        if v is None:
            continue
        if isinstance(v, bool):
            kinds.add("boolean")
        elif isinstance(v, int):
            kinds.add("integer")
        elif isinstance(v, float):
            kinds.add("number")
        elif isinstance(v, str):
            kinds.add("string")
        else:
            kinds.add("object")
    if kinds == {"integer", "number"}:
        return "number"
    return kinds.pop() if len(kinds) == 1 else "object"  # mixed or all null: dynamic


def _in_resources_table(doc: dict) -> bool:
    """Network child resources (subnets, ipConfigurations, rules...) live inside their parent
    document in ARG, not as rows of their own."""
    t = (doc.get("type") or "").lower()
    return not (t.startswith("microsoft.network/") and t.count("/") >= 2)


class _Quota:
    """Fixed window per caller: `limit` queries per `window` seconds."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float]):
        self.limit, self.window, self.clock = limit, window, clock
        self.windows: dict[str, tuple[float, int]] = {}
        self.lock = threading.Lock()

    def take(self, caller: str) -> tuple[bool, int, float]:
        """(allowed, remaining after this query, seconds until the window resets)."""
        with self.lock:
            now = self.clock()
            start, used = self.windows.get(caller, (now, 0))
            if now - start >= self.window:
                start, used = now, 0
            resets = max(0.0, start + self.window - now)
            if used >= self.limit:
                self.windows[caller] = (start, used)
                return False, 0, resets
            used += 1
            self.windows[caller] = (start, used)
            return True, self.limit - used, resets


def _hhmmss(seconds: float) -> str:
    s = math.ceil(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


class ResourceGraphService:
    def __init__(self, *, quota: int = 15, window_seconds: float = 5.0,
                 tenant_id: str = DEFAULT_TENANT, clock: Callable[[], float] = time.monotonic,
                 response_limit_bytes: int = RESPONSE_LIMIT_BYTES):
        self.tenant_id = tenant_id
        self.response_limit_bytes = response_limit_bytes
        self._quota = _Quota(quota, window_seconds, clock)
        self.queries = 0  # queries answered (any status but 429), for request counting

    def query(self, body: dict, resources: list[dict], caller: str) -> tuple[int, dict, dict]:
        allowed, remaining, resets = self._quota.take(caller)
        headers = {"x-ms-user-quota-remaining": str(remaining),
                   "x-ms-user-quota-resets-after": _hhmmss(resets)}
        if not allowed:
            headers["Retry-After"] = str(max(1, math.ceil(resets)))
            return 429, headers, {"error": {
                "code": "RateLimiting", "message": _support_message(),
                "details": [{"code": "RateLimiting", "message": _THROTTLED}]}}
        self.queries += 1
        try:
            result = self._run(body or {}, resources)
        except kql.KqlError as e:
            detail: dict[str, Any] = {"code": e.code, "message": e.message}
            if e.line >= 0:
                detail.update(line=e.line, characterPositionInLine=e.column)
            if e.token is not None:
                detail["token"] = e.token
            return 400, headers, {"error": {
                "code": "BadRequest", "message": _support_message(),
                "details": [{"code": "InvalidQuery", "message": _INVALID}, detail]}}
        size = len(json.dumps(result, separators=(",", ":")).encode())
        if size > self.response_limit_bytes:
            return 400, headers, {"error": {
                "code": "BadRequest", "message": _support_message(),
                "details": [{"code": "ResponsePayloadTooLarge", "message": (
                    f"Response payload size is {size}, and has exceeded the limit of "
                    f"{self.response_limit_bytes}. Please consider querying less data at a "
                    "time and make paginated call if needed.")}]}}
        return 200, headers, result

    def _run(self, body: dict, resources: list[dict]) -> dict:
        text = body.get("query")
        if not isinstance(text, str) or not text.strip():
            raise kql.KqlError("The query is empty", "ParserFailure", line=1, column=0)
        options = body.get("options") or {}
        subs = {s.lower() for s in body.get("subscriptions") or []}
        # Management-group scopes: the emulator has one tenant and no hierarchy, so a
        # management-group query sees every subscription in the store.
        rows = [to_arg_row(d, self.tenant_id) for d in resources if _in_resources_table(d)]
        if subs:
            rows = [r for r in rows if r["subscriptionId"].lower() in subs]
        parsed = kql.parse(text)
        table = kql.Evaluator({"Resources": rows}, {"Resources": COLUMNS}).run(parsed)

        scope_hash = hashlib.sha256(
            json.dumps([text, sorted(subs), body.get("managementGroups")]).encode()
        ).hexdigest()[:16]
        offset = 0
        token = options.get("$skipToken")
        if token:
            offset = self._decode_token(token, scope_hash)
        try:
            if options.get("$skip") is not None:  # $skip overrides the token's offset
                offset = max(0, int(options["$skip"]))
            top = options.get("$top")
            page = MAX_PAGE if top is None else max(1, min(int(top), MAX_PAGE))
        except (TypeError, ValueError) as e:
            raise kql.KqlError("$top and $skip must be integers", "InvalidRequestOptions") from e

        total = len(table.rows)
        if kql.has_limit(parsed):
            offset = 0  # ARG ignores $skip when the query itself limits the rows
        chunk = table.rows[offset:offset + page]
        more = offset + len(chunk) < total
        # ARG cannot page a query with take/limit/top, or whose columns are all dynamic/null.
        pageable = not kql.has_limit(parsed) and any(
            _column_type([r.get(c) for r in table.rows]) in ("string", "integer", "number",
                                                              "boolean")
            for c in table.columns)
        result: dict[str, Any] = {
            "totalRecords": total,
            "count": len(chunk),
            "resultTruncated": "true" if more and not pageable else "false",
        }
        if more and pageable:
            result["$skipToken"] = self._encode_token(offset + len(chunk), scope_hash)
        if options.get("resultFormat") == "table":
            result["data"] = {
                "columns": [{"name": c, "type": _column_type([r.get(c) for r in table.rows])}
                            for c in table.columns],
                "rows": [[r.get(c) for c in table.columns] for r in chunk],
            }
        else:
            result["data"] = [{c: r.get(c) for c in table.columns} for r in chunk]
        result["facets"] = []
        return result

    @staticmethod
    def _encode_token(offset: int, scope_hash: str) -> str:
        raw = json.dumps({"o": offset, "h": scope_hash}).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @staticmethod
    def _decode_token(token: str, scope_hash: str) -> int:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            data = json.loads(raw)
            offset, h = int(data["o"]), data["h"]
        except (ValueError, KeyError, TypeError) as e:
            raise kql.KqlError("The $skipToken is not valid", "InvalidSkipToken") from e
        if h != scope_hash:
            raise kql.KqlError("The $skipToken belongs to a different query or scope",
                               "InvalidSkipToken")
        return offset
