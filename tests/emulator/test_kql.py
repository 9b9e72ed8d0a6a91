"""The emulator's KQL evaluator: table-driven cases and properties over random rows."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.graph.kql import KqlError, execute

VM1 = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"
VM2 = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm2"
NIC1 = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/nic1"
NIC2 = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/nic2"
NIC3 = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/nic3"

ROWS = [
    {"id": VM1, "name": "vm1", "type": "microsoft.compute/virtualmachines", "kind": "",
     "tags": {"hairpin": "opt-in", "Env": "Prod"},
     "properties": {
         "networkProfile": {"networkInterfaces": [
             {"id": NIC1, "properties": {"primary": True}},
             {"id": NIC3, "properties": {"primary": False}}]},
         "extended": {"instanceView": {"powerState": {"code": "PowerState/running"}}}}},
    {"id": VM2, "name": "vm2", "type": "microsoft.compute/virtualmachines", "kind": "",
     "tags": None,
     "properties": {
         "networkProfile": {"networkInterfaces": [{"id": NIC2}]},
         "extended": {"instanceView": {"powerState": {"code": "PowerState/deallocated"}}}}},
    {"id": NIC1, "name": "nic1", "type": "microsoft.network/networkinterfaces", "kind": "",
     "tags": {},
     "properties": {"primary": True, "ipConfigurations": [
         {"name": "ipconfig1", "properties": {"privateIPAddress": "10.0.1.10"}}]}},
    {"id": NIC2, "name": "nic2", "type": "microsoft.network/networkinterfaces", "kind": "",
     "tags": {},
     "properties": {"ipConfigurations": [
         {"name": "ipconfig1", "properties": {"privateIPAddress": "10.0.1.20"}}]}},
]
TABLES = {"Resources": ROWS}


def run(query: str) -> list[dict]:
    return execute(query, TABLES).rows


CASES = [
    # (query, expected rows)
    ("Resources | where type =~ 'Microsoft.Compute/virtualMachines' | project name",
     [{"name": "vm1"}, {"name": "vm2"}]),
    ("resources | where type == 'Microsoft.Compute/virtualMachines' | project name", []),
    ("Resources | where type !~ 'microsoft.compute/virtualmachines' | project name",
     [{"name": "nic1"}, {"name": "nic2"}]),
    ("Resources | where name != 'vm1' | project name | order by name asc",
     [{"name": "nic1"}, {"name": "nic2"}, {"name": "vm2"}]),
    ("where name in ('vm1', 'NIC1') | project name", [{"name": "vm1"}]),
    ("Resources | where name in~ ('VM1', 'NIC1') | project name",
     [{"name": "vm1"}, {"name": "nic1"}]),
    ("Resources | where name !in ('vm1', 'nic1', 'nic2') | project name", [{"name": "vm2"}]),
    ("Resources | where name in (dynamic(['vm2', 'nic2'])) | project name",
     [{"name": "vm2"}, {"name": "nic2"}]),
    ("Resources | where id has 'virtualMachines' | project name",
     [{"name": "vm1"}, {"name": "vm2"}]),
    ("Resources | where id has 'virtualMach' | project name", []),
    ("Resources | where id contains 'VIRTUALMACH' and name startswith 'vm2' | project name",
     [{"name": "vm2"}]),
    ("Resources | where name endswith '1' and not(name has 'nic1') | project name",
     [{"name": "vm1"}]),
    # dotted, indexed and bracketed dynamic access
    ("Resources | where type =~ 'microsoft.network/networkinterfaces'"
     " | project ip = properties.ipConfigurations[0].properties['privateIPAddress']",
     [{"ip": "10.0.1.10"}, {"ip": "10.0.1.20"}]),
    ("Resources | where name == 'vm1'"
     " | project first = tostring(properties.networkProfile.networkInterfaces[0].id),"
     " last = tostring(properties.networkProfile.networkInterfaces[-1].id)",
     [{"first": NIC1, "last": NIC3}]),
    ("Resources | where properties.primary == true | project name", [{"name": "nic1"}]),
    ("Resources | where tobool(properties.primary) | project name", [{"name": "nic1"}]),
    ("Resources | where isnotempty(tags.hairpin) | project name, v = tags['hairpin']",
     [{"name": "vm1", "v": "opt-in"}]),
    ("Resources | where isempty(tags.hairpin) | count", [{"Count": 3}]),
    ("Resources | where isnull(tags) | project name", [{"name": "vm2"}]),
    # extend, functions
    ("Resources | where name == 'vm1' | extend n = array_length(properties.networkProfile"
     ".networkInterfaces), p = tostring(properties.extended.instanceView.powerState.code)"
     " | project n, p, up = toupper(name), lo = tolower('AbC'), s = strcat(name, '-', n)",
     [{"n": 2, "p": "PowerState/running", "up": "VM1", "lo": "abc", "s": "vm1-2"}]),
    ("Resources | where name == 'vm2' | project a = iff(isnull(tags), 'none', 'some'),"
     " b = iif(1 > 2, 1, 2), c = coalesce(tags.x, '', 'fallback'), d = toint('42'),"
     " e = toint('x'), f = tostring(dynamic({'k': [1, true]})), g = todynamic('[1,2]')[1],"
     " h = parse_json('{\"a\": 3}').a, i = tobool('TRUE'), j = 7 / 2, k = -3 + 10 % 4",
     [{"a": "none", "b": 2, "c": "fallback", "d": 42, "e": None, "f": '{"k":[1,true]}',
       "g": 2, "h": 3, "i": True, "j": 3, "k": -1}]),
    ("Resources | where name == 'vm1' | extend x = 1, y = x + 1 | project y", [{"y": 2}]),
    ("Resources | where name == 'vm1' | project tostring(properties.extended.instanceView"
     ".powerState.code)", [{"properties_extended_instanceView_powerState_code":
                            "PowerState/running"}]),
    # mv-expand: name=expr, bags, empty and null values
    ("Resources | where type =~ 'microsoft.compute/virtualmachines'"
     " | mv-expand nic = properties.networkProfile.networkInterfaces"
     " | project vm = name, nicId = tostring(nic.id), primary = tobool(nic.properties.primary)",
     [{"vm": "vm1", "nicId": NIC1, "primary": True}, {"vm": "vm1", "nicId": NIC3,
                                                      "primary": False},
      {"vm": "vm2", "nicId": NIC2, "primary": None}]),
    ("Resources | where name == 'vm1' | mv-expand tags | project tags",
     [{"tags": {"hairpin": "opt-in"}}, {"tags": {"Env": "Prod"}}]),
    ("Resources | where name startswith 'nic' | extend e = dynamic([]) | mv-expand e | count",
     [{"Count": 0}]),
    ("Resources | where name == 'vm2' | mv-expand tags | project name, tags",
     [{"name": "vm2", "tags": None}]),
    ("Resources | where name == 'vm1' | extend a = dynamic([1, 'x', 2.5, true])"
     " | mv-expand with_itemindex=i a to typeof(long) | project i, a",
     [{"i": 0, "a": 1}, {"i": 1, "a": None}, {"i": 2, "a": None}, {"i": 3, "a": None}]),
    ("Resources | where name == 'vm1' | mv-expand kind=array tags | project tags",
     [{"tags": ["hairpin", "opt-in"]}, {"tags": ["Env", "Prod"]}]),
    ("Resources | where name == 'vm1' | extend a = dynamic([1, 2, 3]), b = dynamic(['x'])"
     " | mv-expand a, b limit 2 | project a, b", [{"a": 1, "b": "x"}, {"a": 2, "b": None}]),
    # sorting, take, top, distinct, summarize
    ("Resources | project name | order by name", [{"name": "vm2"}, {"name": "vm1"},
                                                  {"name": "nic2"}, {"name": "nic1"}]),
    ("Resources | sort by type asc, name desc | project name | take 3",
     [{"name": "vm2"}, {"name": "vm1"}, {"name": "nic2"}]),
    ("Resources | top 1 by name asc | project name", [{"name": "nic1"}]),
    ("Resources | limit 0", []),
    ("Resources | distinct type | order by type asc",
     [{"type": "microsoft.compute/virtualmachines"},
      {"type": "microsoft.network/networkinterfaces"}]),
    ("Resources | summarize count() by type | order by type asc",
     [{"type": "microsoft.compute/virtualmachines", "count_": 2},
      {"type": "microsoft.network/networkinterfaces", "count_": 2}]),
    ("Resources | summarize n = count(), names = make_list(name), k = dcount(type)",
     [{"n": 4, "names": ["vm1", "vm2", "nic1", "nic2"], "k": 2}]),
    ("Resources | summarize countif(name startswith 'vm') by kind", [{"kind": "", "countif_": 2}]),
    # joins
    ("Resources | where type =~ 'microsoft.compute/virtualmachines'"
     " | mv-expand nic = properties.networkProfile.networkInterfaces"
     " | extend nicId = tolower(tostring(nic.id))"
     " | join kind=inner (Resources | where type =~ 'microsoft.network/networkinterfaces'"
     "   | project nicId = tolower(id), ip = tostring(properties.ipConfigurations[0]"
     ".properties.privateIPAddress)) on nicId"
     " | project name, ip | order by name asc",
     [{"name": "vm1", "ip": "10.0.1.10"}, {"name": "vm2", "ip": "10.0.1.20"}]),
    ("Resources | where type =~ 'microsoft.compute/virtualmachines'"
     " | mv-expand nic = properties.networkProfile.networkInterfaces"
     " | project vm = name, nicId = tostring(nic.id)"
     " | join kind=leftouter (Resources | project id, nicName = name)"
     "   on $left.nicId == $right.id"
     " | project vm, nicName",
     [{"vm": "vm1", "nicName": "nic1"}, {"vm": "vm1", "nicName": None},
      {"vm": "vm2", "nicName": "nic2"}]),
    ("Resources | project name, kind | join (Resources | project kind, n2 = name) on kind"
     " | count", [{"Count": 4}]),  # innerunique: one left row per key
    ("Resources | project name, kind | join kind=inner hint.strategy=broadcast"
     " (Resources | project kind) on kind"
     " | project-away kind1 | count", [{"Count": 16}]),
    ("Resources | where name == 'vm1' | project id | join kind=inner"
     " (Resources | where name == 'vm1' | project id) on id",
     [{"id": VM1, "id1": VM1}]),
    ("Resources | project-away properties, tags, kind, type | project-rename vmid = id"
     " | where name == 'vm1'", [{"vmid": VM1, "name": "vm1"}]),
    # comments and literals
    ("// all running VMs\nResources // the table\n| where tostring(properties.extended"
     ".instanceView.powerState.code) == \"PowerState/running\" // filter\n| project name",
     [{"name": "vm1"}]),
    ("Resources | where name == @'vm1' and 1.5 > 1 and true | project name", [{"name": "vm1"}]),
    # bag_pack (and its old name pack): the discovery query's property projection
    ("Resources | where name == 'vm1' | project b = bag_pack('n', name, 'x', properties.nope,"
     " 'e', bag_pack('s', tostring(properties.extended.instanceView.powerState.code)))",
     [{"b": {"n": "vm1", "x": None, "e": {"s": "PowerState/running"}}}]),
    ("Resources | where name == 'vm1' | project b = pack('n', name)", [{"b": {"n": "vm1"}}]),
]


@pytest.mark.parametrize(("query", "expected"), CASES, ids=[c[0][:60] for c in CASES])
def test_query(query, expected):
    assert run(query) == expected


def test_an_empty_table_still_has_its_schema():
    assert execute("Resources | where type =~ 'x' | project id", {"Resources": []},
                   {"Resources": ["id", "type"]}).rows == []
    with pytest.raises(KqlError):
        execute("Resources | where nope == 1", {"Resources": []}, {"Resources": ["id"]})


def test_columns_keep_kusto_order_and_names():
    t = execute("Resources | where name == 'vm1' | extend z = 1 | project-away properties",
                TABLES)
    assert t.columns == ["id", "name", "type", "kind", "tags", "z"]
    t = execute("Resources | where name == 'vm1' | project id | join kind=inner "
                "(Resources | project id, name) on id", TABLES)
    assert t.columns == ["id", "id1", "name"]


ERRORS = [
    # (query, error code, line, position, token)
    ("Resources | parse id with * '/' x", "InvalidQueryLanguage", 1, 12, "parse"),
    ("Resources | where foo(name)", "UnknownFunction", 1, 18, None),
    ("Resources | where Name == 'vm1'", "FailedToResolveColumn", 1, 18, None),  # case-sensitive
    ("Resources | where name == ", "ParserFailure", 1, 26, "<EOF>"),
    ("Resources\n| project name,\n| take 1", "ParserFailure", 3, 0, "|"),
    ("SecurityResources | take 1", "InvalidQueryLanguage", 1, 0, "SecurityResources"),
    ("Resources | join kind=fullouter (Resources) on id", "InvalidQueryLanguage", 1, 12,
     "fullouter"),
    ("Resources | where name == 'unterminated", "ParserFailure", 1, 26, None),
    ("Resources | project x = count()", "UnknownFunction", 1, 24, None),
    ("Resources | project b = bag_pack('a')", "InvalidQueryLanguage", -1, -1, None),
]


@pytest.mark.parametrize(("query", "code", "line", "pos", "token"), ERRORS,
                         ids=[e[0][:40] for e in ERRORS])
def test_errors(query, code, line, pos, token):
    with pytest.raises(KqlError) as info:
        execute(query, TABLES)
    err = info.value
    assert (err.code, err.line, err.column) == (code, line, pos)
    if token is not None:
        assert err.token == token
    assert err.message


# ---------------------------------------------------------------------------------------------
# Properties over random rows

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False,
                                                                            width=32),
                    st.sampled_from(["", "a", "A", "vm1", "Microsoft.Network/x", "10.0.1.10"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["a", "b", "id"]), inner,
                                                 max_size=3)), max_leaves=6)
rows_strategy = st.lists(st.fixed_dictionaries(
    {"id": st.text("abc", max_size=3)},
    optional={"name": values, "type": values, "properties": values, "tags": values}),
    max_size=12)
SCHEMA = {"Resources": ["id", "name", "type", "properties", "tags"]}

PREDICATES = [
    "name == 'a'", "name != 'a'", "type =~ 'microsoft.network/x'", "name !~ 'A'",
    "name in ('a', 'vm1')", "name in~ ('A')", "name !in ('a')", "name has 'vm1'",
    "name contains 'a'", "name startswith 'Mi'", "isnotempty(properties.a)",
    "isempty(tags) or isnull(name)", "not(tobool(properties.b))", "properties.a.id == 'a'",
    "array_length(properties) > 1", "toint(name) >= 0 and tostring(type) != ''",
    "properties[0] == 1", "properties['id'] =~ 'A'", "strcat(name, type) == ''",
    "iff(isnull(tags), true, false)", "coalesce(name, type) == 'a'",
]
PROJECTIONS = [
    "id, name", "id, x = properties.a, y = tostring(tags)", "id, n = array_length(properties)",
    "id, t = tolower(tostring(type)), u = toupper(tostring(name))",
    "id, d = todynamic(tostring(properties))",
]


@settings(max_examples=150, deadline=None)
@given(rows=rows_strategy, pred=st.sampled_from(PREDICATES), proj=st.sampled_from(PROJECTIONS))
def test_random_rows_never_crash_where_project(rows, pred, proj):
    t = execute(f"Resources | where {pred} | project {proj}", {"Resources": rows}, SCHEMA)
    assert len(t.rows) <= len(rows)
    assert all(set(r) == set(t.columns) for r in t.rows)


@settings(max_examples=100, deadline=None)
@given(rows=rows_strategy, pred=st.sampled_from(PREDICATES), seed=st.integers(0, 10_000))
def test_order_by_makes_results_independent_of_input_order(rows, pred, seed):
    unique = list({r["id"]: r for r in rows}.values())  # order by a unique key: no ties
    shuffled = unique[:]
    random.Random(seed).shuffle(shuffled)
    q = f"Resources | where {pred} | project id, name, tags | order by id asc"
    assert (execute(q, {"Resources": unique}, SCHEMA).rows
            == execute(q, {"Resources": shuffled}, SCHEMA).rows)


@settings(max_examples=60, deadline=None)
@given(rows=rows_strategy, seed=st.integers(0, 10_000))
def test_summarize_counts_are_independent_of_input_order(rows, seed):
    shuffled = rows[:]
    random.Random(seed).shuffle(shuffled)
    q = "Resources | summarize n = count() by t = tostring(type) | order by t asc"
    a = execute(q, {"Resources": rows}, SCHEMA).rows
    assert a == execute(q, {"Resources": shuffled}, SCHEMA).rows
    assert sum(r["n"] for r in a) == len(rows)
