"""The ARM request dispatch: a route kind -> the handler that answers it (operations, lists and
pages, resource groups, resources GET/PUT/PATCH/DELETE, child resources, actions, Resource
Graph), with ETag conditions and the linked-access checks of writes."""

from __future__ import annotations

import copy
from urllib.parse import urlencode, urlsplit

from emulator.errors import ArmError, not_found, rg_not_found
from emulator.identity import Identity
from emulator.rbac import authorize_linked, permissions_at
from emulator.resources import compute, health, network, power, run_command, types, vms
from emulator.routes import Route
from emulator.state import new_etag

# PUTs whose REST spec declares no If-None-Match header: the header is ignored, as nothing says
# the service honours it (docs/azure-contract.md).
IF_NONE_MATCH_UNDOCUMENTED = frozenset({types.NIC.lower()})

__all__ = ["ArmDispatcher"]


class ArmDispatcher:
    """Answers one routed ARM request against the emulator's model (under its lock)."""

    def __init__(self, emu) -> None:
        self.emu = emu
        self.graph = None

    def dispatch(self, method, route: Route, query, headers, body, entry, lro_fault):
        kind = route.kind
        if kind == "graph":
            return self._graph_query(body, entry.principal)
        if kind == "operation":
            return self._operation(route, query)
        self._check_subscription(route)
        if kind == "metrics_batch" and method == "POST":
            return self.emu.metrics.batch(route, query, body)
        if kind == "metrics" and method == "GET":
            return self.emu.metrics.per_resource(route, query)
        if kind == "permissions":
            return 200, {}, self._permissions(route, entry)
        if kind == "skus":
            skus = compute.list_skus(self.emu, query.get("$filter"))
            return 200, {}, self._page(skus, query, route)
        if kind == "list_sub":
            scope = f"/subscriptions/{route.subscription}"
            return 200, {}, self._list(self.emu.store.raw_of_type(route.rtype, scope), query, route)
        if not self.emu.store.has_resource_group(route.rg_id):
            raise rg_not_found(route.resource_group)
        if kind == "resource_group":
            return 200, {}, {
                "id": route.rg_id,
                "name": route.resource_group,
                "type": "Microsoft.Resources/resourceGroups",
                "properties": {"provisioningState": "Succeeded"},
            }
        if kind == "list_rg":
            docs = self.emu.store.raw_of_type(route.rtype, route.rg_id)
            return 200, {}, self._list(docs, query, route)
        rid = route.resource_id
        if kind == "resource":
            return self._resource(method, route, rid, query, body, headers, entry, lro_fault)
        if kind in ("child_list", "child"):
            return self._child(method, route, rid, query, body, headers, entry, lro_fault)
        if kind == "action" and method == "POST":
            return self._action(route, rid, body, lro_fault)
        if kind == "child_action" and method == "POST" and _is_rule_health(route):
            result = health.rule_health(self.emu, rid, route.child_name)
            op = self._op(route, rid, lro_fault, result=result)
            return 202, self.emu.ops.headers(op, location=True), None
        raise ArmError(405, "MethodNotAllowed", f"{method} is not supported on {route.kind}.")

    def _permissions(self, route: Route, entry) -> dict:
        if route.resource_group and not self.emu.store.has_resource_group(route.rg_id):
            raise rg_not_found(route.resource_group)
        ident = self.emu.tokens.find(principal_id=entry.principal) or Identity(
            entry.principal, entry.client_id, "")
        return {"value": permissions_at(self.emu.roles, ident, route.scope)}

    def _operation(self, route: Route, query):
        op = self.emu.ops.get(route.operation_id)
        if op is None:
            raise ArmError(404, "NotFound", f"Operation {route.operation_id} not found.")
        if route.operation_kind == "operationResults" or query.get("monitor") == "true":
            return self.emu.ops.result_response(op)
        body = self.emu.ops.status_body(op)
        # ARM tells pollers when to come back while the operation runs.
        running = body["status"] == "InProgress"
        return 200, self.emu.ops.retry_after_headers(op) if running else {}, body

    def _check_subscription(self, route: Route) -> None:
        known = {k.split("/")[2] for k in self.emu.store.resource_groups}
        known.add(self.emu.subscription_id.lower())
        if route.subscription and route.subscription.lower() not in known:
            raise ArmError(
                404,
                "SubscriptionNotFound",
                f"The subscription '{route.subscription}' could not be found.",
            )

    def _resource(self, method, route: Route, rid, query, body, headers, entry, lro_fault):
        if route.child == "instanceView":
            if method != "GET":
                raise ArmError(405, "MethodNotAllowed", "instanceView is read-only.")
            compute.check_exists(self.emu, rid)
            return 200, {}, vms.instance_view(self.emu, rid)
        if method == "GET":
            doc = self.emu.store.get(rid)
            if doc is None:
                raise not_found(rid)
            expand = "instanceview" in query.get("$expand", "").lower()
            return 200, {"ETag": doc.get("etag", "")}, self.emu.view(doc, expand)
        if method in ("PUT", "PATCH"):
            return self._put(route, rid, body, headers, entry, lro_fault, patch=method == "PATCH")
        if method == "DELETE":
            return self._delete(route, rid, headers, lro_fault)
        raise ArmError(405, "MethodNotAllowed", f"{method} is not supported on {route.kind}.")

    def _op(self, route: Route, rid: str, fault=None, location: str | None = None, **kw):
        doc = self.emu.store.raw(rid) or {}
        op = self.emu.ops.create(
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

    def _check_etag(self, headers, existing: dict | None, rtype: str | None = None) -> None:
        if_match, if_none = headers.get("If-Match"), headers.get("If-None-Match")
        if rtype is not None and rtype.lower() in IF_NONE_MATCH_UNDOCUMENTED:
            # NetworkInterfaces_CreateOrUpdate (Microsoft.Network 2024-05-01) declares no
            # If-None-Match parameter: no create-only guarantee is modelled for it.
            if_none = None
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
        existing = self.emu.store.get(rid)
        self._check_etag(headers, existing, route.rtype)
        sent = body
        if patch:
            if existing is None:
                raise not_found(rid)
            body = _merge(existing, body)
        is_vm = route.rtype.lower() == types.VM.lower()
        if is_vm:
            doc, linked = compute.prepare_put(self.emu, rid, body, existing,
                                              sent=sent if patch else None)
        elif route.namespace.lower() == "microsoft.network":
            doc, linked = network.prepare_put(self.emu, route.rtype, rid, body, existing)
        else:  # other types: stored as given, so scenarios may carry them
            doc = {
                **copy.deepcopy(body),
                "id": rid,
                "name": route.name,
                "type": route.rtype,
                "etag": new_etag(),
            }
            linked = []
        entry.linked_actions = sorted({a.action for a in linked})
        authorize_linked(
            self.emu.roles,
            self.emu.tokens.find(principal_id=entry.principal)
            or Identity(entry.principal, entry.client_id),
            entry.action,
            rid,
            linked,
        )
        op = self._op(route, rid, lro_fault, location=doc.get("location"))
        if op.error is None:
            if is_vm:
                compute.commit_put(self.emu, doc, existing)
            else:
                self.emu.store.put(doc)
        shown = self.emu.view(copy.deepcopy(doc))
        shown.setdefault("properties", {})["provisioningState"] = (
            "Updating" if existing else ("Creating" if is_vm else "Updating")
        )
        if patch and not is_vm:  # Microsoft.Network PATCH (tags) answers synchronously
            return 200, {}, self.emu.view(self.emu.store.get(rid) or doc)
        return (200 if existing else 201), self.emu.ops.headers(op, location=False), shown

    def _delete(self, route: Route, rid: str, headers, lro_fault):
        existing = self.emu.store.get(rid)
        if existing is None:
            return 204, {}, None
        self._check_etag(headers, existing)
        if route.rtype.lower() != types.VM.lower():
            network.check_delete(self.emu, existing)
        op = self._op(route, rid, lro_fault)
        if op.error is None:
            if route.rtype.lower() == types.VM.lower():
                compute.check_delete(self.emu, existing)
            self.emu.store.delete(rid)
        return 202, self.emu.ops.headers(op, location=True), None

    def _child(self, method, route: Route, rid, query, body, headers, entry, lro_fault):
        parent = self.emu.store.get(rid)
        if parent is None:
            raise not_found(rid)
        parent = self.emu.view(parent)
        if method == "GET":
            found = network.child_view(parent, route.child, route.child_name)
            if found is None:
                raise not_found(f"{rid}/{route.child}")
            if route.kind == "child_list":
                return 200, {}, self._page(found, query, route)
            return 200, {}, found
        if route.kind != "child" or method not in ("PUT", "DELETE"):
            raise ArmError(405, "MethodNotAllowed", f"{method} not supported here.")
        stored = self.emu.store.get(rid)
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
            return 202, self.emu.ops.headers(self.emu.ops.get(_op_id(h)), location=True), None
        child = network.child_view(
            self.emu.view(self.emu.store.get(rid) or stored), route.child, route.child_name
        )
        return (200 if idx is not None else 201), h, child

    def _action(self, route: Route, rid: str, body: dict, lro_fault):
        if route.rtype.lower() != types.VM.lower():
            raise ArmError(400, "InvalidRequestUri", f"Unsupported action '{route.action}'.")
        compute.check_exists(self.emu, rid)
        op = self._op(route, rid, lro_fault)
        if route.action.lower() == "runcommand":
            if op.error is None:
                run_command.start_run_command(self.emu, rid, body, op)
        elif op.error is None:
            power.power_action(self.emu, rid, route.action)
        return 202, self.emu.ops.headers(op, location=True), None

    def _graph_query(self, body: dict, caller: str):
        if self.graph is None:
            try:
                from emulator.graph.resource_graph import ResourceGraphService
            except ImportError as err:
                raise ArmError(
                    501, "NotImplemented", f"Resource Graph is not available: {err}"
                ) from err
            self.graph = ResourceGraphService(
                response_limit_bytes=self.emu.graph_response_limit_bytes)
        status, headers, out = self.graph.query(body, self.emu.arg_resources(), caller)
        return status, headers or {}, out

    # ------------------------------------------------------------------ lists and paging
    def _list(self, docs: list[dict], query: dict, route: Route) -> dict:
        expand = (
            query.get("statusOnly", "").lower() == "true"
            or "instanceview" in query.get("$expand", "").lower()
        )
        return self._page(docs, query, route, lambda d: self.emu.view(copy.deepcopy(d), expand))

    def _page(self, items: list, query: dict, route: Route, render=None) -> dict:
        skip = int(query.get("$skiptoken") or 0)
        page = items[skip : skip + self.emu.page_size]
        out = {"value": [render(d) for d in page] if render else page}
        if skip + self.emu.page_size < len(items):
            q = dict(query, **{"$skiptoken": str(skip + self.emu.page_size)})
            out["nextLink"] = f"{self.emu.base_url}{route.path}?{urlencode(q, safe='$')}"
        return out


def _is_rule_health(route: Route) -> bool:
    return (
        route.rtype.lower() == types.LB.lower()
        and route.child == "loadBalancingRules"
        and route.action.lower() == "health"
    )


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
