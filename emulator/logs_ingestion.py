"""The Logs Ingestion API of a data collection endpoint (DCE), as `azure-monitor-ingestion`'s
LogsIngestionClient calls it: POST {endpoint}/dataCollectionRules/{immutable id}/streams/
{stream}?api-version=2023-01-01, a gzip JSON array, a bearer token for Azure Monitor.

Shaped from the REST spec (azure-rest-api-specs, specification/monitor/data-plane/ingestion/
stable/2023-01-01/DataCollectionRules.json: 204 on success, ErrorResponse otherwise), the SDK's
troubleshooting guide (403 OperationFailed without Monitoring Metrics Publisher on the DCR) and
the service limits (1 MB per call); docs/azure-facts.md lists what each check stands on.

Rules are added from the template's DCR (`add_rule`), so the streams the emulator accepts are
the ones the deployment declares. As a DCR does, a row keeps only the declared columns (others
are dropped) and a value of the wrong type becomes null; both are recorded per request
(`LogsIngestion.requests`) so tests can prove nothing was lost. Accepted rows are kept in
`rows[(immutable id, stream)]`.
"""

from __future__ import annotations

import gzip
import json
import threading
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl, urlsplit

from emulator.errors import ArmError
from emulator.rbac import authorize

__all__ = ["LogsIngestion", "IngestionRequest", "MONITOR_AUDIENCES", "TELEMETRY_WRITE",
           "MAX_BODY_BYTES", "logs_handler"]

MONITOR_AUDIENCES = {"https://monitor.azure.com"}
# a data action of the Monitoring Metrics Publisher role
TELEMETRY_WRITE = "Microsoft.Insights/Telemetry/Write"
MAX_BODY_BYTES = 1024 * 1024  # Azure Monitor service limits: 1 MB per Logs Ingestion call
API_VERSIONS = {"2023-01-01", "2021-11-01-preview"}


@dataclass
class Rule:
    dcr_id: str
    streams: dict[str, dict[str, str]]  # stream -> {column: type}


@dataclass
class IngestionRequest:
    """One call as the endpoint saw it."""

    status: int
    rule: str
    stream: str
    principal: str | None = None
    encoding: str | None = None
    rows: int = 0
    dropped: set[str] = field(default_factory=set)  # undeclared columns removed
    nulled: set[str] = field(default_factory=set)  # declared columns with a wrong-typed value


def _check_type(kind: str, value) -> bool:
    if value is None:
        return True
    if kind == "string":
        return isinstance(value, str)
    if kind in ("int", "long"):
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "real":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "datetime":
        try:
            datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            return isinstance(value, str)
        except ValueError:
            return False
    return kind == "dynamic"


class LogsIngestion:
    """The DCE: rules by immutable ID, the rows each stream received, every request."""

    def __init__(self, emu) -> None:
        self.emu = emu
        self.rules: dict[str, Rule] = {}
        self.rows: dict[tuple[str, str], list[dict]] = {}
        self.requests: list[IngestionRequest] = []
        self.lock = threading.Lock()

    def add_rule(self, dcr_id: str, stream_declarations: dict,
                 immutable_id: str | None = None) -> str:
        """A DCR (its ARM ID and `properties.streamDeclarations`); returns its immutable ID."""
        immutable_id = immutable_id or "dcr-" + uuid.uuid4().hex
        streams = {name: {c["name"]: c["type"] for c in decl["columns"]}
                   for name, decl in stream_declarations.items()}
        self.rules[immutable_id] = Rule(dcr_id, streams)
        return immutable_id

    def handle(self, method: str, target: str, headers, raw: bytes):
        """(status, headers, body) of one request."""
        url = urlsplit(target)
        parts = url.path.strip("/").split("/")
        seen = IngestionRequest(0, "", "")
        try:
            if method != "POST" or len(parts) != 4 or parts[0] != "dataCollectionRules" \
                    or parts[2] != "streams":
                raise ArmError(404, "NotFound", f"No route for '{url.path}'.")
            seen.rule, seen.stream = parts[1], parts[3]
            ident = self.emu.tokens.verify(headers.get("Authorization"), MONITOR_AUDIENCES)
            seen.principal = ident.principal_id
            self._check_version(dict(parse_qsl(url.query)).get("api-version"))
            rule = self._rule(seen.rule)
            authorize(self.emu.roles, ident, [TELEMETRY_WRITE], rule.dcr_id)
            columns = self._stream(rule, seen.rule, seen.stream)
            seen.encoding = headers.get("Content-Encoding")
            rows = self._rows(self._body(raw, seen.encoding))
            kept = [self._shape(row, columns, seen) for row in rows]
            with self.lock:
                self.rows.setdefault((seen.rule, seen.stream), []).extend(kept)
            seen.status, seen.rows = 204, len(kept)
            return self._answer(seen, 204, {}, None)
        except ArmError as err:
            if err.status == 403 and err.code == "AuthorizationFailed":
                err = self._not_allowed(seen.rule, ident)
            return self._answer(seen, err.status,
                                {**err.headers, "x-ms-error-code": err.code}, err.body())

    def _answer(self, seen: IngestionRequest, status: int, headers: dict, body):
        seen.status = status
        with self.lock:
            self.requests.append(seen)
        return status, headers, body

    @staticmethod
    def _check_version(version: str | None) -> None:
        if not version:
            raise ArmError(400, "MissingApiVersionParameter",
                           "The api-version query parameter (?api-version=) is required.")
        if version not in API_VERSIONS:
            raise ArmError(400, "InvalidApiVersionParameter",
                           f"The api-version '{version}' is invalid.")

    def _rule(self, immutable_id: str) -> Rule:
        rule = self.rules.get(immutable_id)
        if rule is None:
            raise ArmError(404, "NotFound",
                           f"Data collection rule with immutable Id '{immutable_id}' not found.")
        return rule

    @staticmethod
    def _stream(rule: Rule, immutable_id: str, stream: str) -> dict[str, str]:
        if stream not in rule.streams:
            raise ArmError(400, "InvalidStream",
                           f"Stream '{stream}' is not declared in the data collection rule "
                           f"with immutable Id '{immutable_id}'.")
        return rule.streams[stream]

    def _not_allowed(self, immutable_id: str, ident) -> ArmError:
        rule = self.rules[immutable_id]
        return ArmError(403, "OperationFailed",
                        "The authentication token provided does not have access to ingest data "
                        f"for the data collection rule with immutable Id '{immutable_id}' "
                        f"PipelineAccessResult: AccessGranted: False, DcrArmId: {rule.dcr_id}, "
                        "Message: Required authorization action was not found for objectId "
                        f"{ident.principal_id} on resourceId {rule.dcr_id}.")

    @staticmethod
    def _body(raw: bytes, encoding: str | None) -> bytes:
        if len(raw) > MAX_BODY_BYTES:
            raise ArmError(413, "ContentLengthLimitExceeded",
                           f"The request body is {len(raw)} bytes; the limit is 1 MB.")
        if (encoding or "").lower() == "gzip":
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError, zlib.error):
                raise ArmError(400, "InvalidContentEncoding",
                               "The request body is not valid gzip.") from None
        elif encoding:
            raise ArmError(400, "InvalidContentEncoding",
                           f"Content-Encoding '{encoding}' is not supported; use gzip.")
        return raw

    @staticmethod
    def _rows(raw: bytes) -> list[dict]:
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise ArmError(400, "InvalidPayload", "The request body is not valid JSON.") from None
        if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
            raise ArmError(400, "InvalidPayload",
                           "The request body must be a JSON array of objects.")
        return doc

    @staticmethod
    def _shape(row: dict, columns: dict[str, str], seen: IngestionRequest) -> dict:
        seen.dropped |= set(row) - set(columns)
        out = {}
        for name, kind in columns.items():
            value = row.get(name)
            if not _check_type(kind, value):
                seen.nulled.add(name)
                value = None
            out[name] = value
        return out


def logs_handler(ingestion: LogsIngestion):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "dce-emulator"

        def log_message(self, *args):  # quiet; the request log is LogsIngestion.requests
            pass

        def _serve(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, headers, body = ingestion.handle(self.command, self.path, self.headers, raw)
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("x-ms-request-id", str(uuid.uuid4()))
            if data:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _serve

    return Handler
