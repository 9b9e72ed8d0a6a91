"""Every rendered Windows script parsed with a real PowerShell grammar (tree-sitter-powershell):
no syntax error for any input hypothesis draws, and the commands it runs read from the parse
tree (names, parameters, values), not from the text. PowerShell itself cannot run here; what
the route cmdlets do with the stores is written in docs/azure-facts.md ("Windows routes")."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.core import guest as gs
from shared.core.guest import GuestRouteSpec, GuestScriptError
from tests.unit.test_guest_scripts import HA, SPEC, specs

ts = pytest.importorskip("tree_sitter")
tsp = pytest.importorskip("tree_sitter_powershell")
PARSER = ts.Parser(ts.Language(tsp.language()))

# Every command a rendered script may run: cmdlets, the script's own functions, ping.exe.
ALLOWED = {
    "New-Object", "Write-Output", "ConvertTo-Json", "Get-NetAdapter", "Where-Object",
    "ForEach-Object", "Get-NetIPAddress", "Get-NetNeighbor", "Get-NetRoute", "New-NetRoute",
    "Remove-NetRoute", "ping.exe", "Write-Result", "Fail", "Find-SecondaryAdapter",
}


def nodes(node):
    yield node
    for child in node.children:
        yield from nodes(child)


def parse(text: str):
    tree = PARSER.parse(text.encode("utf-8"))
    errors = [(n.type, n.start_point) for n in nodes(tree.root_node)
              if n.type == "ERROR" or n.is_missing]
    return tree, errors


def commands(text: str) -> list[tuple[str, list[str]]]:
    """(command name, its elements: parameters and arguments as written) per command."""
    tree, errors = parse(text)
    assert not errors, errors
    out = []
    for n in nodes(tree.root_node):
        if n.type != "command":
            continue
        name = next(c for c in n.children if c.type in ("command_name", "command_name_expr"))
        elements = next((c for c in n.children if c.type == "command_elements"), None)
        args = [] if elements is None else [
            c.text.decode() for c in elements.children if c.type != "command_argument_sep"]
        out.append((name.text.decode(), args))
    return out


def params(args: list[str]) -> dict[str, str | None]:
    """-Name value pairs (a switch, or -Name:value, maps to what follows the colon)."""
    out: dict[str, str | None] = {}
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("-") and ":" in a:
            out[a.split(":", 1)[0]] = a.split(":", 1)[1]
        elif a.startswith("-"):
            nxt = args[i + 1] if i + 1 < len(args) else None
            out[a] = None if nxt is None or nxt.startswith("-") else nxt
            i += out[a] is not None
        i += 1
    return out


def assigned(text: str) -> dict[str, str]:
    """Top-level `$Name = value` assignments: variable -> the value's text."""
    tree, errors = parse(text)
    assert not errors, errors
    out = {}
    top = next(c for c in tree.root_node.children if c.type == "statement_list")
    for statement in top.children:
        found = [n for n in nodes(statement) if n.type == "assignment_expression"]
        if found and statement.start_point[1] == 0:
            left, _, right = found[0].children[:3]
            out.setdefault(left.text.decode(), right.text.decode())
    return out


def targets_added(text: str) -> list[str]:
    """The values the verify script appends to $Targets (`$Targets += ...`), in order."""
    return [n.children[2].text.decode() for n in nodes(parse(text)[0].root_node)
            if n.type == "assignment_expression" and n.children[0].text.decode() == "$Targets"
            and n.children[1].text.decode() == "+="]


def renders(spec: GuestRouteSpec) -> dict[str, str]:
    out = {"apply": gs.render_windows_apply(spec), "cleanup": gs.render_windows_cleanup(spec)}
    if spec.verify_targets():
        out["verify"] = gs.render_windows_verify(spec)
    return out


def test_apply_routes_only_through_the_managed_adapter_both_stores():
    cmds = commands(gs.render_windows_apply(SPEC))
    assert {name for name, _ in cmds} <= ALLOWED
    new = [params(a) for n, a in cmds if n == "New-NetRoute"]
    assert len(new) == 3  # none yet, only the active one, only the persistent one
    for p in new:
        assert (p["-DestinationPrefix"], p["-InterfaceIndex"], p["-NextHop"],
                p["-RouteMetric"]) == ("$prefix", "$idx", "$Gateway", "1")
    # No store given writes both (New-NetRoute reference, which says PersistentStore "cannot
    # be used" on its own); a store is named only to add the missing active route.
    assert sorted(p.get("-PolicyStore") or "both" for p in new) == [
        "ActiveStore", "both", "both"]
    removes = [params(a) for n, a in cmds if n == "Remove-NetRoute"]
    assert removes == [{"-Confirm": "$false"},  # the active-only route, re-created in both
                       {"-InputObject": "$_", "-Confirm": "$false"}]
    gets = [params(a) for n, a in cmds if n == "Get-NetRoute"]
    assert {p.get("-PolicyStore") for p in gets} == {"ActiveStore", "PersistentStore", "$store"}
    values = assigned(gs.render_windows_apply(SPEC))
    assert values["$Mac"] == "'00-0D-3A-12-34-56'" and values["$Gateway"] == "'10.0.1.1'"
    assert values["$Vips"] == "@('10.0.1.100', '10.0.1.101')"


def test_cleanup_removes_and_never_adds():
    cmds = commands(gs.render_windows_cleanup(SPEC))
    names = [n for n, _ in cmds]
    assert "New-NetRoute" not in names and names.count("Remove-NetRoute") == 1
    [remove] = [params(a) for n, a in cmds if n == "Remove-NetRoute"]
    assert remove == {"-Confirm": "$false"}  # from the pipeline of Get-NetRoute
    [get] = [params(a) for n, a in cmds if n == "Get-NetRoute"]
    assert (get["-DestinationPrefix"], get["-NextHop"], get["-PolicyStore"]) == (
        '"$vip/32"', "$Gateway", "$store")


def test_verify_connects_to_each_target():
    text = gs.render_windows_verify(SPEC, count=5)
    assert {n for n, _ in commands(text)} <= ALLOWED
    values = assigned(text)
    assert (values["$Count"], values["$TimeoutMs"]) == ("5", "2000")
    assert targets_added(text) == [",@('10.0.1.100', 1972)", ",@('10.0.1.101', 1972)"]


def test_the_grammar_reports_what_powershell_would_reject():
    """The check itself can fail: a render with a brace or quote lost is a syntax error."""
    text = gs.render_windows_apply(SPEC)
    for broken in (text.replace("}", "", 1), text.replace("'", "", 1),
                   text.replace("@{", "@(", 1)):
        assert parse(broken)[1], broken[:80]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(st.data())
def test_fuzz_every_windows_render_parses_and_runs_only_allowed_commands(data):
    try:
        spec = data.draw(specs())
    except GuestScriptError:
        return
    for name, text in renders(spec).items():
        cmds = commands(text)  # asserts zero syntax errors
        assert {n for n, _ in cmds} <= ALLOWED, name
        values = assigned(text)
        if name == "verify":
            assert values["$Count"] == "20"
            assert targets_added(text) == [f",@('{t.vip}', {t.port})"
                                           for t in spec.verify_targets()]
        else:
            assert values["$Vips"] == "@(" + ", ".join(f"'{v}'" for v in spec.vips) + ")"
            assert values["$Mac"] == f"'{spec.secondary_mac.windows}'"
            assert values["$SecondaryIp"] == f"'{spec.secondary_ip}'"


def test_ha_ports_spec_renders_parseable_windows_scripts():
    for text in renders(HA).values():
        assert not parse(text)[1]
