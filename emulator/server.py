"""The emulator: HTTPS (throwaway CA), bearer auth, RBAC, faults, routing and LROs.

with Emulator(scenario) as emu:
    NetworkManagementClient(cred, emu.subscription_id, base_url=emu.base_url,
                            connection_verify=emu.ca_path)
"""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import socket
import ssl
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

from emulator.errors import ArmError, not_found, rg_not_found
from emulator.events import make_event
from emulator.faults import Faults
from emulator.guests import GuestModel, RecordingGuest
from emulator.identity import Identity, TokenService
from emulator.lro import Operations
from emulator.reqlog import RequestEntry, RequestLog
from emulator.resources import compute, network
from emulator.routes import Route, parse
from emulator.state import Store, lower, new_etag, parent_id
from emulator.throttle import Throttle

DEFAULT_SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
_DROP = object()  # handler result: close the socket without answering


def load_scenario(scenario) -> dict:
    if scenario is None:
        return {"resources": []}
    if isinstance(scenario, (str, Path)):
        return json.loads(Path(scenario).read_text())
    return copy.deepcopy(scenario)


class Emulator:
    """ARM emulator over one scenario document. See emulator/README.md."""

    def __init__(
        self,
        scenario=None,
        guest: GuestModel | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        page_size: int = 100,
        lro_polls: int = 1,
        lro_retry_after: int | None = None,
        roles: dict | None = None,
        identities: list[Identity] | None = None,
        subscription_id: str | None = None,
        run_command_seconds: float = 0.0,
        throttle: bool | dict = False,
    ):
        self.scenario = load_scenario(scenario)
        emu_cfg = self.scenario.get("emulator") or {}
        self.guest = guest if guest is not None else RecordingGuest(emu_cfg.get("guest"))
        self.host, self._port = host, port
        self.page_size = page_size
        self.run_command_seconds = run_command_seconds  # how long each Run Command takes
        # ARM subscription throttling; True = Azure's limits, or {"reads": (burst, per_s), ...}
        self.throttle = (
            Throttle(throttle if isinstance(throttle, dict) else None) if throttle else None
        )
        self.lro_polls, self.lro_retry_after = lro_polls, lro_retry_after
        # {principal or client id or name or "*": {"Microsoft.Network/*/read", ...}} grants at
        # every scope; a mapping {scope: actions} grants each set at that scope and below it,
        # as role assignments do, e.g. {"/subscriptions/s/resourceGroups/rg": {...},
        # "/subscriptions/s": {"*/read"}} (see _granted_at).
        self.roles = roles
        if identities is None and emu_cfg.get("identities"):
            identities = [
                Identity(i["principalId"], i["clientId"], i.get("name", "identity"))
                for i in emu_cfg["identities"]
            ]
        self.tokens = TokenService(identities)
        self.store = Store()
        self.faults = Faults()
        self.requests = RequestLog()
        self.events: list[dict] = []  # Event Grid system-topic events of the writes served
        self.on_event = None  # optional callable(event), called as each event is made
        self.lock = threading.RLock()  # one request mutates the model at a time
        self.busy_lock = threading.Lock()
        self.run_busy: set[str] = set()  # VMs with a Run Command in progress
        self.power: dict[str, str] = {}  # lower VM id -> running | deallocated | stopped
        self.instance_extra: dict[str, dict] = {}
        self.skus: list[dict] = list(self.scenario.get("skus") or [])
        self.health: dict[str, dict] = {}
        self.mirrors: list[dict] = []
        self.subscription_id = subscription_id or emu_cfg.get("subscriptionId") or self._guess_sub()
        self._graph = None
        self._servers: list[ThreadingHTTPServer] = []
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.ca_path = self.base_url = self.identity_endpoint = None
        self._load()

    # ------------------------------------------------------------------ scenario loading
    def _guess_sub(self) -> str:
        for doc in self.scenario.get("resources") or []:
            parts = doc.get("id", "").strip("/").split("/")
            if len(parts) > 1 and parts[0].lower() == "subscriptions":
                return parts[1]
        return DEFAULT_SUBSCRIPTION

    def _load(self) -> None:
        for rg in (self.scenario.get("emulator") or {}).get("resourceGroups", []):
            self.store.add_resource_group(
                f"/subscriptions/{self.subscription_id}/resourceGroups/{rg}"
            )
        for raw in self.scenario.get("resources") or []:
            doc = copy.deepcopy(raw)
            doc.setdefault("etag", new_etag())
            for coll in network.CHILDREN.get(doc.get("type", "").lower(), []):
                for child in doc.get("properties", {}).get(coll) or []:
                    child.setdefault("id", f"{doc['id']}/{coll}/{child.get('name')}")
            if doc.get("type", "").lower() == compute.VM.lower():
                iv = doc.get("properties", {}).pop("instanceView", None) or {}
                state = "running"
                for st in iv.get("statuses", []):
                    if st.get("code", "").lower().startswith("powerstate/"):
                        state = st["code"].split("/", 1)[1].lower()
                self.power[lower(doc["id"])] = state
                self.instance_extra[lower(doc["id"])] = {
                    k: v for k, v in iv.items() if k != "statuses"
                }
            self.store.put(doc)
        for h in self.scenario.get("health") or []:
            self.health[lower(h["ruleId"])] = copy.deepcopy(h.get("response") or {})
        for m in (self.scenario.get("emulator") or {}).get("mirrors") or []:
            self.mirrors.append(
                {
                    "rules": {lower(r) for r in m.get("rules", [])},
                    "members": list(m.get("members", [])),
                    "primary": m.get("primary") or (m.get("members") or [None])[0],
                }
            )

    def _boot(self) -> None:
        """Running VMs boot their guests (at start(), so a guest can attach to us first)."""
        with self.lock:
            for vm in self.store.of_type(compute.VM):
                if self.power_state(vm["id"]) == "running":
                    self.power[lower(vm["id"])] = "stopped"
                    compute.start(self, vm["id"])

    # ------------------------------------------------------------------ model helpers
    def new_guid(self) -> str:
        return str(uuid.uuid4())

    def power_state(self, vm_id: str) -> str:
        return self.power.get(lower(vm_id), "running")

    def set_power(self, vm_id: str, state: str) -> None:
        """Test helper: change a VM's power state as if an operator did (guest hooks run)."""
        with self.lock:
            if state == "running":
                compute.start(self, vm_id)
            else:
                compute.stop(self, vm_id, state)

    def set_agent_ready(self, vm_id: str, ready: bool) -> None:
        """Test helper: mark the VM agent Ready / Not Ready (Run Command then fails)."""
        with self.lock:
            compute.set_agent_ready(self, vm_id, ready)

    def _member_running(self, ipconfig_id: str) -> bool:
        nic = self.store.raw(parent_id(ipconfig_id))
        vm = ((nic or {}).get("properties", {}).get("virtualMachine") or {}).get("id")
        return bool(vm) and self.power_state(vm) == "running"

    def power_changed(self) -> None:
        """Mirror failover: a primary whose VM stopped hands over to the first running member."""
        for m in self.mirrors:
            if m["primary"] and not self._member_running(m["primary"]):
                for member in m["members"]:
                    if self._member_running(member):
                        m["primary"] = member
                        break

    def fail_over(self, vm_id: str) -> None:
        """Demo/test helper: a planned mirror failover (as a DBA does it) that makes this VM's
        members the primaries; the guest model is told so its ILB follows."""
        with self.lock:
            for m in self.mirrors:
                for member in m["members"]:
                    nic = self.store.raw(parent_id(member))
                    vm = ((nic or {}).get("properties", {}).get("virtualMachine") or {}).get("id")
                    if vm and lower(vm) == lower(vm_id) and self._member_running(member):
                        m["primary"] = member
            changed = getattr(self.guest, "on_health_changed", None)
            if changed:
                changed()

    def mirror_primary_for(self, rule_id: str) -> str | None:
        self.power_changed()
        for m in self.mirrors:
            if lower(rule_id) in m["rules"]:
                return m["primary"]
        return None

    def arg_resources(self) -> list[dict]:
        """What Resource Graph sees: every document as GET returns it, VMs with their current
        instanceView (emulator.graph.resource_graph turns these into ARG rows)."""
        return [self._view(doc, expand=True) for doc in self.store.all()]

    def _view(self, doc: dict, expand: bool = False) -> dict:
        t = doc.get("type", "").lower()
        if t == compute.VM.lower():
            return compute.view(self, doc, expand)
        return network.view(self, doc)

    def token_for(
        self, identity: Identity | None = None, audience: str = "https://management.azure.com"
    ) -> str:
        """A valid bearer token (for raw HTTP tests)."""
        return self.tokens.issue(identity or self.tokens.identities[0], audience)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Emulator:
        import trustme  # dev dependency; only needed when serving

        self._tmp = tempfile.TemporaryDirectory(prefix="arm-emulator-")
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_path = os.path.join(self._tmp.name, "ca.pem")
        ca.cert_pem.write_to_path(self.ca_path)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        arm = _Server((self.host, self._port), _handler(self, arm=True))
        arm.tls = ctx
        ident = _Server((self.host, 0), _handler(self, arm=False))
        self._servers = [arm, ident]
        self.base_url = f"https://{self.host}:{arm.server_address[1]}"
        self.identity_endpoint = f"http://{self.host}:{ident.server_address[1]}/msi/token"
        self.ops = Operations(self.base_url, self.lro_polls, self.lro_retry_after)
        self._boot()
        for srv in self._servers:
            threading.Thread(
                target=srv.serve_forever,
                kwargs={"poll_interval": 0.1},
                daemon=True,
                name="arm-emulator",
            ).start()
        return self

    def stop(self) -> None:
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()
        self._servers = []
        if self._tmp:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._servers[0].server_address[1]

    @property
    def identity_header(self) -> str:
        return self.tokens.header_secret

    def env(self) -> dict:
        return {
            "IDENTITY_ENDPOINT": self.identity_endpoint,
            "IDENTITY_HEADER": self.identity_header,
            "REQUESTS_CA_BUNDLE": self.ca_path,
            "HAIRPIN_ARM_ENDPOINT": self.base_url,
            "AZURE_SUBSCRIPTION_ID": self.subscription_id,
        }

    # ------------------------------------------------------------------ request pipeline
    def handle(self, method: str, target: str, headers, raw: bytes):
        """One ARM request -> (status, headers, body) or _DROP."""
        url = urlsplit(target)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        route = parse(url.path)
        if route is not None:
            route.path = url.path
            route.api_version = query.get("api-version", "2024-01-01")
        entry = RequestEntry(
            method,
            url.path,
            url.query,
            route.resource_type if route else None,
            route.rbac_action(method) if route else None,
        )
        fault = None
        limit_headers: dict = {}
        try:
            ident = self.tokens.verify(headers.get("Authorization"))
            entry.principal, entry.client_id = ident.principal_id, ident.client_id
            if route is None:
                raise ArmError(404, "InvalidResourceType", f"No route for '{url.path}'.")
            if route.kind != "operation" and "api-version" not in query:
                raise ArmError(
                    400,
                    "MissingApiVersionParameter",
                    "The api-version query parameter (?api-version=) is required for all requests.",
                )
            # Resource Graph is a tenant-level query (ARM filters its rows by read access):
            # a grant at any scope lets the query through.
            self._authorize(ident, [entry.action], url.path, any_scope=route.kind == "graph")
            if self.throttle is not None and route.subscription:
                ok, limit_headers = self.throttle.take(route.subscription, method != "GET")
                if not ok:
                    raise ArmError(
                        429,
                        "TooManyRequests",
                        "The request is being throttled as the limit has been reached for "
                        "operation type - " + ("Write" if method != "GET" else "Read") + ".",
                        limit_headers,
                    )
            fault = self.faults.take(method, url.path)
            if fault is not None:
                entry.fault = fault.changes_the_answer
                if fault.action is not None:
                    fault.action()
                if fault.delay_seconds:
                    time.sleep(fault.delay_seconds)
                if fault.drop_connection:
                    entry.status = 0  # 0 = no answer at all
                    self.requests.record(entry)
                    return _DROP
                if fault.status:
                    h = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after else {}
                    raise ArmError(fault.status, fault.code, fault.text(), h)
            body = json.loads(raw) if raw else {}
            with self.lock:
                status, h, out = self._dispatch(
                    method,
                    route,
                    query,
                    headers,
                    body,
                    entry,
                    fault if fault and fault.lro_failed else None,
                )
        except ArmError as err:
            status, h, out = err.status, err.headers, err.body()
        except json.JSONDecodeError as err:
            status, h, out = (
                400,
                {},
                {
                    "error": {
                        "code": "InvalidRequestContent",
                        "message": f"The request content is not valid JSON: {err}",
                    }
                },
            )
        except Exception as err:  # a bug in the emulator: say so, ARM-shaped
            traceback.print_exc(file=sys.stderr)
            status, h, out = (
                500,
                {},
                {"error": {"code": "InternalServerError", "message": repr(err)}},
            )
        entry.status = status
        h = {**limit_headers, **h}
        self.requests.record(entry)
        if entry.is_write and entry.principal and route is not None and route.name:
            # a failed LRO or a rejected write is a Failure event; a 204 (nothing to delete) none
            failed = status in (400, 409) or (
                status < 300 and fault is not None and fault.lro_failed
            )
            if (200 <= status < 300 and status != 204) or failed:
                self._emit(method, route, entry, not failed)
        return status, h, out

    def _emit(self, method: str, route: Route, entry: RequestEntry, ok: bool) -> None:
        rid = route.resource_id
        if route.child and route.kind in ("child", "child_action"):
            rid = f"{rid}/{route.child}/{route.child_name}"
        ident = self.tokens.find(principal_id=entry.principal) or Identity(
            entry.principal, entry.client_id or "", "unknown"
        )
        event = make_event(
            method, rid, entry.action, ok, route.subscription, ident, str(uuid.uuid4())
        )
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    def _authorize(
        self, ident: Identity, actions: list, scope: str, any_scope: bool = False
    ) -> None:
        if self.roles is None:
            return
        granted = set()
        for key in (ident.principal_id, ident.client_id, ident.name, "*"):
            granted |= _granted_at(self.roles.get(key, ()), None if any_scope else scope)
        for action in actions:
            if action and not any(fnmatch.fnmatchcase(action.lower(), g) for g in granted):
                raise ArmError(
                    403,
                    "AuthorizationFailed",
                    f"The client '{ident.client_id}' with object id '{ident.principal_id}' "
                    f"does not have authorization to perform action '{action}' over "
                    f"scope '{scope}' or the scope is invalid. If access was recently "
                    f"granted, please refresh your credentials.",
                )

    # ------------------------------------------------------------------ dispatch
    def _dispatch(self, method, route: Route, query, headers, body, entry, lro_fault):
        kind = route.kind
        if kind == "graph":
            return self._graph_query(body, entry.principal)
        if kind == "operation":
            op = self.ops.get(route.operation_id)
            if op is None:
                raise ArmError(404, "NotFound", f"Operation {route.operation_id} not found.")
            if route.operation_kind == "operationResults" or query.get("monitor") == "true":
                return self.ops.result_response(op)
            body = self.ops.status_body(op)
            # ARM tells pollers when to come back while the operation runs.
            headers = {}
            if self.lro_retry_after is not None and body["status"] == "InProgress":
                headers["Retry-After"] = str(self.lro_retry_after)
            return 200, headers, body
        known = {k.split("/")[2] for k in self.store.resource_groups}
        if route.subscription and route.subscription.lower() not in known | {
            self.subscription_id.lower()
        }:
            raise ArmError(
                404,
                "SubscriptionNotFound",
                f"The subscription '{route.subscription}' could not be found.",
            )
        if kind == "skus":
            return 200, {}, self._page(compute.list_skus(self, query.get("$filter")), query, route)
        if kind == "list_sub":
            scope = f"/subscriptions/{route.subscription}"
            return 200, {}, self._list(self.store.raw_of_type(route.rtype, scope), query, route)
        if not self.store.has_resource_group(route.rg_id):
            raise rg_not_found(route.resource_group)
        if kind == "resource_group":
            return (
                200,
                {},
                {
                    "id": route.rg_id,
                    "name": route.resource_group,
                    "type": "Microsoft.Resources/resourceGroups",
                    "properties": {"provisioningState": "Succeeded"},
                },
            )
        if kind == "list_rg":
            return (
                200,
                {},
                self._list(self.store.raw_of_type(route.rtype, route.rg_id), query, route),
            )
        rid = route.resource_id
        if kind == "resource" and route.child == "instanceView":
            if method != "GET":
                raise ArmError(405, "MethodNotAllowed", "instanceView is read-only.")
            compute.check_exists(self, rid)
            return 200, {}, compute.instance_view(self, rid)
        if kind == "resource":
            if method == "GET":
                doc = self.store.get(rid)
                if doc is None:
                    raise not_found(rid)
                expand = "instanceview" in query.get("$expand", "").lower()
                return 200, {"ETag": doc.get("etag", "")}, self._view(doc, expand)
            if method in ("PUT", "PATCH"):
                return self._put(
                    route, rid, body, headers, entry, lro_fault, patch=method == "PATCH"
                )
            if method == "DELETE":
                return self._delete(route, rid, headers, lro_fault)
        if kind in ("child_list", "child"):
            return self._child(method, route, rid, query, body, headers, entry, lro_fault)
        if kind == "action" and method == "POST":
            return self._action(route, rid, body, lro_fault)
        if kind == "child_action" and method == "POST":
            if (
                route.rtype.lower() == network.LB.lower()
                and route.child == "loadBalancingRules"
                and route.action.lower() == "health"
            ):
                result = network.rule_health(self, rid, route.child_name)
                op = self._op(route, rid, lro_fault, result=result)
                return 202, self.ops.headers(op, location=True), None
        raise ArmError(405, "MethodNotAllowed", f"{method} is not supported on {route.kind}.")

    def _op(self, route: Route, rid: str, fault=None, location: str | None = None, **kw):
        doc = self.store.raw(rid) or {}
        op = self.ops.create(
            route.namespace,
            location or doc.get("location") or "westus",
            route.subscription,
            route.api_version,
            **kw,
        )
        if fault is not None:
            op.error = {
                "code": fault.error_code or "InternalOperationError",
                "message": fault.message or "The operation failed (injected fault).",
            }
        return op

    def _check_etag(self, headers, existing: dict | None) -> None:
        if_match, if_none = headers.get("If-Match"), headers.get("If-None-Match")
        if if_match and if_match != "*" and (existing is None or existing.get("etag") != if_match):
            raise ArmError(
                412,
                "PreconditionFailed",
                "The condition specified using HTTP conditional header(s) is not met.",
            )
        if if_match == "*" and existing is None:
            raise ArmError(
                412, "PreconditionFailed", "If-Match: * but the resource does not exist."
            )
        if if_none == "*" and existing is not None:
            raise ArmError(412, "PreconditionFailed", "If-None-Match: * but the resource exists.")

    def _put(self, route: Route, rid: str, body: dict, headers, entry, lro_fault, patch=False):
        existing = self.store.get(rid)
        self._check_etag(headers, existing)
        if patch:
            if existing is None:
                raise not_found(rid)
            body = _merge(existing, body)
        is_vm = route.rtype.lower() == compute.VM.lower()
        if is_vm:
            doc, linked = compute.prepare_put(self, rid, body, existing)
        elif route.namespace.lower() == "microsoft.network":
            doc, linked = network.prepare_put(self, route.rtype, rid, body, existing)
        else:  # other types: stored as given, so scenarios may carry them
            doc = {
                **copy.deepcopy(body),
                "id": rid,
                "name": route.name,
                "type": route.rtype,
                "etag": new_etag(),
            }
            linked = []
        entry.linked_actions = linked
        self._authorize(
            self.tokens.find(principal_id=entry.principal)
            or Identity(entry.principal, entry.client_id),
            linked,
            rid,
        )
        op = self._op(route, rid, lro_fault, location=doc.get("location"))
        if op.error is None:
            if is_vm:
                compute.commit_put(self, doc, existing)
            else:
                self.store.put(doc)
        shown = self._view(copy.deepcopy(doc))
        shown.setdefault("properties", {})["provisioningState"] = (
            "Updating" if existing else ("Creating" if is_vm else "Updating")
        )
        if patch and not is_vm:  # Microsoft.Network PATCH (tags) answers synchronously
            return 200, {}, self._view(self.store.get(rid) or doc)
        return (200 if existing else 201), self.ops.headers(op, location=False), shown

    def _delete(self, route: Route, rid: str, headers, lro_fault):
        existing = self.store.get(rid)
        if existing is None:
            return 204, {}, None
        self._check_etag(headers, existing)
        if route.rtype.lower() != compute.VM.lower():
            network.check_delete(self, existing)
        op = self._op(route, rid, lro_fault)
        if op.error is None:
            if route.rtype.lower() == compute.VM.lower():
                compute.check_delete(self, existing)
            self.store.delete(rid)
        return 202, self.ops.headers(op, location=True), None

    def _child(self, method, route: Route, rid, query, body, headers, entry, lro_fault):
        parent = self.store.get(rid)
        if parent is None:
            raise not_found(rid)
        parent = self._view(parent)
        if method == "GET":
            found = network.child_view(parent, route.child, route.child_name)
            if found is None:
                raise not_found(f"{rid}/{route.child}")
            if route.kind == "child_list":
                return 200, {}, self._page(found, query, route)
            return 200, {}, found
        if route.kind != "child" or method not in ("PUT", "DELETE"):
            raise ArmError(405, "MethodNotAllowed", f"{method} not supported here.")
        stored = self.store.get(rid)
        items = stored.setdefault("properties", {}).setdefault(route.child, [])
        idx = next(
            (
                i
                for i, c in enumerate(items)
                if c.get("name", "").lower() == route.child_name.lower()
            ),
            None,
        )
        child_id = f"{rid}/{route.child}/{route.child_name}"
        self._check_etag(headers, items[idx] if idx is not None else None)
        if method == "DELETE":
            if idx is None:
                return 204, {}, None
            items.pop(idx)
        else:
            new = {
                **{k: v for k, v in body.items() if k not in ("etag", "type")},
                "name": route.child_name,
                "id": child_id,
            }
            if idx is None:
                items.append(new)
            else:
                items[idx] = new
        status, h, _ = self._put(route, rid, stored, {}, entry, lro_fault)
        if method == "DELETE":
            return 202, self.ops.headers(self.ops.get(_op_id(h)), location=True), None
        child = network.child_view(
            self._view(self.store.get(rid) or stored), route.child, route.child_name
        )
        return (200 if idx is not None else 201), h, child

    def _action(self, route: Route, rid: str, body: dict, lro_fault):
        if route.rtype.lower() != compute.VM.lower():
            raise ArmError(400, "InvalidRequestUri", f"Unsupported action '{route.action}'.")
        compute.check_exists(self, rid)
        op = self._op(route, rid, lro_fault)
        if route.action.lower() == "runcommand":
            if op.error is None:
                compute.start_run_command(self, rid, body, op)
        elif op.error is None:
            compute.power_action(self, rid, route.action)
        return 202, self.ops.headers(op, location=True), None

    def _graph_query(self, body: dict, caller: str):
        if self._graph is None:
            try:
                from emulator.graph.resource_graph import ResourceGraphService
            except ImportError as err:
                raise ArmError(
                    501, "NotImplemented", f"Resource Graph is not available: {err}"
                ) from err
            self._graph = ResourceGraphService()
        status, headers, out = self._graph.query(body, self.arg_resources(), caller)
        return status, headers or {}, out

    # ------------------------------------------------------------------ lists and paging
    def _list(self, docs: list[dict], query: dict, route: Route) -> dict:
        expand = (
            query.get("statusOnly", "").lower() == "true"
            or "instanceview" in query.get("$expand", "").lower()
        )
        return self._page(docs, query, route, lambda d: self._view(copy.deepcopy(d), expand))

    def _page(self, items: list, query: dict, route: Route, render=None) -> dict:
        skip = int(query.get("$skiptoken") or 0)
        page = items[skip : skip + self.page_size]
        out = {"value": [render(d) for d in page] if render else page}
        if skip + self.page_size < len(items):
            q = dict(query, **{"$skiptoken": str(skip + self.page_size)})
            out["nextLink"] = f"{self.base_url}{route.path}?{urlencode(q, safe='$')}"
        return out


def _granted_at(grant, scope: str | None) -> set[str]:
    """Lowercased action patterns one roles entry grants at `scope` (an ARM path).

    A plain collection grants its actions at every scope. A mapping {scope: actions} grants
    each set at its scope and below (ARM role assignments are inherited by child scopes);
    scope "/" is the whole tenant. `scope=None` means "at any scope" (Resource Graph)."""
    if not isinstance(grant, Mapping):
        return {a.lower() for a in grant}
    target = (scope or "").rstrip("/").lower()
    out: set[str] = set()
    for prefix, actions in grant.items():
        base = prefix.rstrip("/").lower()
        if scope is None or base == "" or target == base or target.startswith(base + "/"):
            out |= {a.lower() for a in actions}
    return out


def _op_id(headers: dict) -> str:
    return urlsplit(headers["Azure-AsyncOperation"]).path.rstrip("/").split("/")[-1]


def _merge(base: dict, patch: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "tags":
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    tls: ssl.SSLContext | None = None

    def get_request(self):
        sock, addr = self.socket.accept()
        if self.tls is None:
            return sock, addr
        # Handshake lazily, in the request's own thread: a stalled client cannot block accept().
        return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request, client_address):
        # TLS handshakes aborted by clients and resets are normal under fault tests.
        if not isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError, TimeoutError)):
            super().handle_error(request, client_address)


def _handler(emu: Emulator, arm: bool):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "arm-emulator"

        def log_message(self, *args):  # quiet; the request log is emu.requests
            pass

        def _send(self, status: int, headers: dict, body) -> None:
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

        def _serve(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if not arm:
                url = urlsplit(self.path)
                if url.path != "/msi/token" or self.command != "GET":
                    return self._send(404, {}, {"statusCode": 404, "message": "Not found"})
                status, body = emu.tokens.token_response(self.headers, dict(parse_qsl(url.query)))
                return self._send(status, {}, body)
            result = emu.handle(self.command, self.path, self.headers, raw)
            if result is _DROP:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            self._send(*result)

        do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _serve

    return Handler
