"""Guest scripts: typed inputs only, golden command lines, idempotent structure, cleanup,
output parsing, and hypothesis fuzzing that no input renders anything but the intended commands.
(Their behaviour on a real kernel is proven in tests/e2e/test_fabric.py.)"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.core import guest as gs
from shared.core.guest import GuestRouteSpec, GuestScriptError, MacAddress, Protocol, VipRoute

SPEC = GuestRouteSpec(
    primary_ip=ipaddress.IPv4Address("10.0.1.10"), secondary_ip="10.0.1.11",
    secondary_mac="00-0D-3A-12-34-56", gateway="10.0.1.1", prefix_len=24,
    routes=[VipRoute("10.0.1.100", Protocol.TCP, 1972, 1972),
            VipRoute("10.0.1.101", "Tcp", 1972, 1972),
            VipRoute("10.0.1.100", "Udp", 53, 5353)])
HA = GuestRouteSpec("10.0.1.10", "10.0.1.11", "00:0d:3a:12:34:56", "10.0.1.1", 24,
                    [VipRoute("10.0.1.102", "All", 0, 0), VipRoute("10.0.1.100", "Tcp", 80, 8080)],
                    ha_ports_broad_rule_allowed=True)
BASH = shutil.which("bash")


def lines(text: str) -> list[str]:
    return text.splitlines()


# ---------------------------------------------------------------- typed values

def test_mac_accepts_arm_and_linux_forms_and_normalises():
    arm, linux = MacAddress.parse("00-0D-3A-12-34-56"), MacAddress.parse("00:0d:3a:12:34:56")
    assert arm == linux
    assert (arm.linux, arm.windows) == ("00:0d:3a:12:34:56", "00-0D-3A-12-34-56")


@pytest.mark.parametrize("bad", [
    "00:0d:3a:12:34", "00:0d:3a:12:34:56:78", "00-0d:3a-12-34-56", "000d3a123456",
    "00:0d:3a:12:34:56\n", "00:0d:3a:12:34:5g", "01:00:5e:00:00:01", "00:0d:3a:12:34:56; reboot",
    "$(reboot)", "", None, 0x000D3A123456, b"00:0d:3a:12:34:56"])
def test_mac_rejects_anything_else(bad):
    with pytest.raises(GuestScriptError):
        MacAddress.parse(bad)


@pytest.mark.parametrize("bad", [
    "10.0.1.100; reboot", "10.0.1.100\n", " 10.0.1.100", "10.0.1.100/32", "$(id)", "10.0.1",
    "010.0.1.100", "::1", "0.0.0.1", "127.0.0.1", "0.0.0.0", "224.0.0.1", "169.254.0.1",
    "240.0.0.1",
    167837028, None, ipaddress.IPv6Address("::1")])
def test_vip_rejects_hostile_or_non_vnet_values(bad):
    with pytest.raises(GuestScriptError):
        VipRoute(bad, "Tcp", 1972, 1972)


@pytest.mark.parametrize("proto,fe,be", [
    ("Tcp", "1972", 1972), ("Tcp", 1972.0, 1972), ("Tcp", True, 1972), ("Tcp", 0, 1972),
    ("Tcp", 1972, 65536), ("Tcp", -1, 1), ("All", 1972, 1972), ("Tcp; id", 1, 1),
    ("Icmp", 1, 1), (None, 1, 1)])
def test_rule_rejects_bad_protocols_and_ports(proto, fe, be):
    with pytest.raises(GuestScriptError):
        VipRoute("10.0.1.100", proto, fe, be)


@pytest.mark.parametrize("change", [
    {"gateway": "10.0.2.1"},                      # not in the secondary NIC's subnet
    {"secondary_ip": "10.0.1.1"},                 # the gateway itself
    {"secondary_ip": "10.0.1.255"},               # broadcast
    {"secondary_ip": "10.0.1.10"},                # same as primary
    {"primary_ip": "10.0.1.1"},                   # primary = gateway
    {"prefix_len": 32}, {"prefix_len": "24"}, {"prefix_len": True},
    {"routes": []}, {"routes": ["10.0.1.100:1972"]},
    {"routes": [VipRoute("10.0.1.11", "Tcp", 1, 1)]},   # VIP = a NIC address
    {"routes": [VipRoute(f"10.0.2.{i}", "Tcp", 1, 1) for i in range(1, 18)]},  # too many
    {"ha_ports_broad_rule_allowed": "yes"},
])
def test_spec_validates_relations(change):
    base = dict(primary_ip="10.0.1.10", secondary_ip="10.0.1.11",
                secondary_mac="00:0d:3a:12:34:56", gateway="10.0.1.1", prefix_len=24,
                routes=[VipRoute("10.0.1.100", "Tcp", 1972, 1972)])
    with pytest.raises(GuestScriptError):
        GuestRouteSpec(**{**base, **change})


# ---------------------------------------------------------------- golden command lines

def test_linux_body_golden_values_and_steps():
    body = gs.render_linux_body(SPEC)
    assert lines(body)[3:19] == [
        "FORMAT=2",
        "PRIMARY_IP=10.0.1.10",
        "SECONDARY_IP=10.0.1.11",
        "SECONDARY_MAC=00:0d:3a:12:34:56",
        "GATEWAY=10.0.1.1",
        "PREFIX_LEN=24",
        "TABLE=100",
        "RULE_PREF=100",
        "LOCAL_PREF=1000",
        "RT_PROTO=211",
        "STATE_DIR=/etc/hairpin",
        "ADDRESS_MARKER=/etc/hairpin/address-added",
        "MECHANISM_FILE=/etc/hairpin/mechanism",
        "WANT_VIPS='10.0.1.100 10.0.1.101'",
        # Rules read back: protocol name, number or "ipproto-N" (no /etc/protocols).
        "WANT_RULES='tcp|6|ipproto-6/1972 udp|17|ipproto-17/5353'",
        "WANT_BROAD=0",
    ]
    steps = body[body.index("\nensure_vip_route 10.0.1.100\n") + 1:].splitlines()[:5]
    assert steps == ["ensure_vip_route 10.0.1.100", "ensure_vip_route 10.0.1.101",
                     "ensure_return_route", "ensure_rule tcp 6 1972", "ensure_rule udp 17 5353"]
    # The commands of the facts file's recipe, with the values filled in by the variables:
    for cmd in [
        'ip route replace "$1/32" via "$GATEWAY" dev "$SEC_DEV" src "$SECONDARY_IP" onlink '
        'proto "$RT_PROTO" table main',
        'ip route replace "$SECONDARY_IP/32" via "$GATEWAY" dev "$PRI_DEV" onlink '
        'proto "$RT_PROTO" table "$TABLE"',
        # Numeric selector (ipproto 6): a name needs /etc/protocols, absent in minimal images.
        'ip rule add pref "$RULE_PREF" from "$PRIMARY_IP" to "$SECONDARY_IP" ipproto "$2" '
        'sport "$3" lookup "$TABLE" protocol "$RT_PROTO"',
        # "protocol kernel": systemd-networkd never removes kernel rules on restart.
        'ip rule add pref "$LOCAL_PREF" lookup local protocol kernel',
        'ip rule del pref 0 lookup local',
    ]:
        assert cmd in body
    assert 'ipproto ($1|$2|ipproto-$2) sport $3 lookup ' in body  # every read-back form
    # Add the local rule at its new position before deleting pref 0 (never without one), and
    # the guard checks after each of the two changes.
    add = body.index('ip rule add pref "$LOCAL_PREF" lookup local protocol kernel')
    delete = body.index("ip rule del pref 0 lookup local")
    assert add < delete
    assert "local_guard ||" in body[add:delete] and "local_guard ||" in body[delete:]
    assert "\nensure_broad_rule\n" not in body and "# WARNING" not in body


def test_linux_idempotent_structure_checks_before_every_add():
    body = gs.render_linux_body(SPEC)
    adds = [i for i, line in enumerate(lines(body))
            if re.search(r"\bip (route replace|rule add|addr add)\b", line)]
    assert adds
    for i in adds:  # the line just before (or the function's first line) is a check + return
        window = "\n".join(lines(body)[max(0, i - 2):i])
        assert re.search(r"(\[ -[nz] \"\$\(ip |our_rules \|)", window), lines(body)[i]


def test_linux_apply_persists_via_enabled_unit_only_after_success():
    script = gs.render_linux_apply(SPEC)
    assert script.count(f"<<'{gs.HEREDOC_END}'") == 3
    assert gs.render_linux_body(SPEC) in script and gs.render_linux_unit() in script
    assert gs.render_linux_watch_unit() in script
    assert "ExecStart=/bin/bash /etc/hairpin/hairpin-routes.sh --boot" in script
    assert "ExecStart=/bin/bash /etc/hairpin/hairpin-routes.sh --watch" in script
    assert "WantedBy=multi-user.target" in script
    detect = script.index("find_devs && detect_stack")
    run_at = script.index('/bin/bash "$TMPD/body" --mechanism "$STACK" --undo-log "$TMPD/undo"')
    assert detect < run_at < script.index('put_file "$src" "$dst" "$mode"')
    assert run_at < script.index('ln -sfn "$target" "$link"')
    assert run_at < script.index("nm_apply ||")
    assert 'if [ "$rc" -ne 0 ]; then cat "$TMPD/out"; exit "$rc"; fi' in script
    # All or nothing: the body's undo list joins the installer's, and every failure after the
    # body ran goes through fail (which rolls back) before the result line.
    assert 'done <"$TMPD/undo"' in script
    assert script.count("|| fail persist 9") >= 6


def test_linux_cleanup_removes_exactly_what_apply_adds():
    script = gs.render_linux_cleanup(SPEC)
    for what in ['ip route show table main proto "$RT_PROTO"',
                 'ip route show table "$TABLE" proto "$RT_PROTO"',
                 'ip rule show pref "$RULE_PREF" table "$TABLE" from "$PRIMARY_IP" '
                 'to "$SECONDARY_IP"',
                 'ip rule add pref 0 lookup local protocol kernel',
                 'ip rule del pref "$LOCAL_PREF" lookup local',
                 'if [ -f "$ADDRESS_MARKER" ]', 'done <"$MANIFEST"', 'nm_restore "$uuid"',
                 'for f in "$UNIT_LINK" "$UNIT_PATH" "$BODY_PATH" "$MANIFEST" "$MECHANISM_FILE"',
                 'rmdir "$STATE_DIR"']:
        assert what in script
    assert script.index("ip rule add pref 0 lookup local") < script.index(
        'ip rule del pref "$LOCAL_PREF" lookup local')
    # The stack's configuration goes before the live state (the stack lets go first).
    assert script.index('done <"$MANIFEST"') < script.index("stack_reload ||") < script.index(
        'ip route show table main proto "$RT_PROTO"')
    assert '"result":"%s"' in script and "RESULT=cleaned" in script


def test_ha_ports_needs_the_setting_and_states_the_side_effect():
    refused = GuestRouteSpec(HA.primary_ip, HA.secondary_ip, HA.secondary_mac, HA.gateway, 24,
                             HA.routes)
    with pytest.raises(GuestScriptError, match="cannot be narrowed") as err:
        gs.render_linux_apply(refused)
    assert gs.HA_PORTS_SIDE_EFFECT in str(err.value)
    body = gs.render_linux_body(HA)
    assert f"# WARNING: {gs.HA_PORTS_SIDE_EFFECT}." in body
    assert "\nensure_broad_rule\n" in body and "ensure_rule tcp 6 8080" in body
    assert any(gs.HA_PORTS_SIDE_EFFECT in line for line in gs.describe(HA))
    assert HA.verify_targets() == (gs.VerifyTarget("10.0.1.100", 80),)  # HA: no port to verify


def test_windows_apply_golden():
    ps = gs.render_windows_apply(SPEC)
    assert lines(ps)[2:7] == ["$Format = 2", "$Mac = '00-0D-3A-12-34-56'",
                              "$SecondaryIp = '10.0.1.11'", "$Gateway = '10.0.1.1'",
                              "$Vips = @('10.0.1.100', '10.0.1.101')"]
    assert "$_.MacAddress -eq $Mac" in ps
    assert "-notmatch 'Mellanox|Virtual Function|Microsoft Azure Network Adapter|MANA'" in ps
    assert ("New-NetRoute -DestinationPrefix $prefix -InterfaceIndex $idx -NextHop $Gateway "
            "-RouteMetric 1\n") in ps  # no -PolicyStore: active + persistent
    assert "Get-NetRoute @sel -PolicyStore PersistentStore" in ps  # checked before adding
    assert "ConvertTo-Json -Compress" in ps and "route add" not in ps
    # Re-rendered with fewer VIPs, apply removes the stale host routes on the managed adapter.
    assert "$wanted -notcontains $_.DestinationPrefix" in ps
    assert "Get-NetRoute -InterfaceIndex $idx -NextHop $Gateway -PolicyStore $store" in ps


def test_windows_cleanup_golden():
    ps = gs.render_windows_cleanup(SPEC)
    assert "Remove-NetRoute -Confirm:$false" in ps
    assert "foreach ($store in 'ActiveStore', 'PersistentStore')" in ps
    assert "New-NetRoute" not in ps


def test_verify_scripts_golden():
    sh = gs.render_linux_verify(SPEC, count=20, timeout_s=2)
    assert "COUNT=20\nTIMEOUT=2\nRULE_PREF=100\nTABLE=100\n" in sh
    assert 'route=false\n  [ -n "$(ip route show table main exact "$1/32" 2>/dev/null)" ]' in sh
    assert '\\"mechanism\\":\\"${MECHANISM:-none}\\"' in sh
    assert [x for x in lines(sh) if x.startswith("probe ")] == [
        "probe 10.0.1.100 1972", "probe 10.0.1.101 1972"]  # UDP skipped
    # Subshells under one deadline, no process per connect (a busy guest starts one slowly).
    assert '( exec 3<>"/dev/tcp/$1/$2" || exit 1; echo C' in sh and "bash -c" not in sh
    assert 'while [ "$ticks" -lt $((TIMEOUT * 5)) ] && kill -0 "${pids[@]}"' in sh
    ps = gs.render_windows_verify(SPEC, count=5)
    assert "$Targets += ,@('10.0.1.100', 1972)\n$Targets += ,@('10.0.1.101', 1972)\n" in ps
    assert "$Count = 5\n$TimeoutMs = 2000\n" in ps
    with pytest.raises(GuestScriptError):
        gs.render_linux_verify(SPEC, count=0)
    with pytest.raises(GuestScriptError):
        gs.render_windows_verify([], count=5)


@pytest.mark.skipif(BASH is None, reason="bash not installed")
@pytest.mark.parametrize("render", [gs.render_linux_apply, gs.render_linux_cleanup,
                                    gs.render_linux_body, gs.render_linux_verify])
def test_linux_scripts_parse_as_bash(render):
    for spec in (SPEC, HA):
        proc = subprocess.run([BASH, "-n"], input=render(spec), text=True, capture_output=True)
        assert proc.returncode == 0, proc.stderr


def test_dispatch_and_command_ids():
    assert gs.render(SPEC, "Linux", "apply") == gs.render_linux_apply(SPEC)
    assert gs.render(SPEC, "windows", "cleanup") == gs.render_windows_cleanup(SPEC)
    assert (gs.command_id("Windows"), gs.command_id("linux")) == (
        "RunPowerShellScript", "RunShellScript")
    with pytest.raises(GuestScriptError):
        gs.render(SPEC, "linux", "rm")
    assert gs.script_lines("a\nb") == ["a", "b"]


# ---------------------------------------------------------------- output parsing

def test_parse_plain_stdout_last_json_line():
    out = 'noise\n{"result":"applied","changes":["+route 10.0.1.100/32 eth1"]}\n\n'
    assert gs.parse_run_command_output(out)["result"] == "applied"


def test_parse_linux_run_command_message_ignores_stderr():
    msg = ('Enable succeeded: \n[stdout]\n{"result":"unchanged","changes":[]}\n\n'
           '[stderr]\n{"not": "this"}\nwarning\n')
    assert gs.parse_run_command_output(msg) == {"result": "unchanged", "changes": []}


def test_parse_windows_value_list():
    value = [{"code": "ComponentStatus/StdOut/succeeded",
              "message": '{"result":"applied","os":"windows","changes":["+route 10.0.1.100/32"]}'},
             {"code": "ComponentStatus/StdErr/succeeded", "message": '{"x": 1}'}]
    assert gs.parse_run_command_output(value)["os"] == "windows"


def test_parse_without_json_raises():
    with pytest.raises(gs.RunCommandOutputError):
        gs.parse_run_command_output("Enable succeeded: \n[stdout]\nhello\n[stderr]\n")
    with pytest.raises(gs.RunCommandOutputError):
        gs.parse_run_command_output("[1, 2]\n{broken\n")


# ---------------------------------------------------------------- fuzzing

_IP = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
_MAC = re.compile(r"\b[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(?:\1[0-9A-Fa-f]{2}){4}\b")
_NUM = re.compile(r"\d+")


def shape(line: str) -> str:
    """A line with every value it may carry replaced by a placeholder (lists of values by one
    list placeholder, since their length varies)."""
    line = _NUM.sub("<N>", _IP.sub("<IP>", _MAC.sub("<MAC>", line)))
    rule = r"(?:tcp|udp)\|<N>\|ipproto-<N>/<N>"
    line = re.sub(rf"{rule}(?: {rule})*", "<RULES>", line)
    line = re.sub(r"'<IP>'(?:, '<IP>')*", "<IPS>", line)
    return re.sub(r"<IP>(?: <IP>)+", "<IP>", line)


def _all_scripts(spec: GuestRouteSpec) -> dict[str, str]:
    return {"apply": gs.render_linux_apply(spec), "cleanup": gs.render_linux_cleanup(spec),
            "lverify": gs.render_linux_verify(spec) if spec.verify_targets() else "",
            "wapply": gs.render_windows_apply(spec), "wcleanup": gs.render_windows_cleanup(spec),
            "wverify": gs.render_windows_verify(spec) if spec.verify_targets() else ""}


# The allow-list: every line shape the renderer can produce, from reference renders that use
# every feature (TCP, UDP, HA ports, one and several VIPs).
ALLOWED: dict[str, set[str]] = {}
_ONE = dict(primary_ip="10.0.1.10", secondary_ip="10.0.1.11", secondary_mac="00:0d:3a:12:34:56",
            gateway="10.0.1.1", prefix_len=24)
for _spec in (SPEC, HA, GuestRouteSpec(**_ONE, routes=[VipRoute("10.0.1.100", "Tcp", 1, 1)]),
              GuestRouteSpec(**_ONE, routes=[VipRoute("10.0.1.100", "All", 0, 0)],
                             ha_ports_broad_rule_allowed=True)):
    for _name, _text in _all_scripts(_spec).items():
        ALLOWED.setdefault(_name, set()).update(shape(line) for line in lines(_text))


_UNICAST = st.integers(0x01000000, 0xDFFFFFFF).map(ipaddress.IPv4Address).filter(
    lambda a: not (a.is_loopback or a.is_link_local or a.is_reserved))


@st.composite
def specs(draw):
    """Valid specs in every shape: any subnet size, both MAC forms, 1..16 TCP/UDP/HA rules."""
    prefix = draw(st.integers(min_value=8, max_value=29))
    base = int(draw(_UNICAST)) & (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
    net = ipaddress.IPv4Network((base, prefix))
    gateway = net.network_address + 1
    in_net = st.integers(2, net.num_addresses - 2).map(lambda i: net.network_address + i)
    secondary = draw(in_net)
    primary = draw(st.one_of(in_net, _UNICAST).filter(lambda a: a not in (secondary, gateway)))
    mac_octets = [draw(st.integers(0, 255)) & 0xFE] + [draw(st.integers(0, 255)) for _ in range(5)]
    sep = draw(st.sampled_from(["-", ":"]))
    mac = sep.join(f"{o:02X}" if sep == "-" else f"{o:02x}" for o in mac_octets)
    taken = {primary, secondary, gateway}
    vip = _UNICAST.filter(lambda a: a not in taken)
    port = st.integers(1, 65535)
    route = st.one_of(
        st.builds(VipRoute, vip, st.sampled_from(["Tcp", "Udp", Protocol.TCP]), port, port),
        st.builds(VipRoute, vip, st.just("All"), st.just(0), st.just(0)))
    routes = draw(st.lists(route, min_size=1, max_size=gs.MAX_ROUTES))
    return GuestRouteSpec(primary, secondary, mac, gateway, prefix, routes,
                          ha_ports_broad_rule_allowed=draw(st.booleans()))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(st.data())
def test_fuzz_renders_only_allowed_command_shapes(data):
    try:
        spec = data.draw(specs())
    except GuestScriptError:
        return  # a random draw broke a relation (e.g. VIP = NIC address): rejected, fine
    if spec.needs_broad_rule and not spec.ha_ports_broad_rule_allowed:
        with pytest.raises(GuestScriptError):
            gs.render_linux_apply(spec)
        return
    for name, text in _all_scripts(spec).items():
        extra = {shape(line) for line in lines(text)} - ALLOWED[name]
        assert not extra, (name, extra)
        # Every address in the script is one of the spec's (or a fixed constant of ours).
        allowed_ips = {str(spec.primary_ip), str(spec.secondary_ip), str(spec.gateway),
                       *(str(v) for v in spec.vips)}
        assert set(_IP.findall(text)) <= allowed_ips, name
    assert {m.group(0) for m in _MAC.finditer(gs.render_linux_body(spec))} == {
        spec.secondary_mac.linux}
    assert {m.group(0) for m in _MAC.finditer(gs.render_windows_apply(spec))} == {
        spec.secondary_mac.windows}


@settings(max_examples=300, deadline=None)
@given(ip=st.text(max_size=40), mac=st.text(max_size=40),
       proto=st.text(max_size=10), port=st.one_of(st.integers(), st.text(max_size=8),
                                                   st.floats(), st.booleans(), st.none()))
def test_fuzz_untrusted_text_never_reaches_a_script(ip, mac, proto, port):
    """Arbitrary text is either rejected or normalised to a strict canonical value."""
    for make in (lambda: VipRoute(ip, "Tcp", 1972, 1972), lambda: MacAddress.parse(mac),
                 lambda: VipRoute("10.0.1.100", proto, 1972, 1972),
                 lambda: VipRoute("10.0.1.100", "Tcp", port, 1972)):
        try:
            value = make()
        except GuestScriptError:
            continue
        if isinstance(value, MacAddress):
            assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", value.linux)
        else:
            assert re.fullmatch(r"(\d{1,3}\.){3}\d{1,3}", str(value.vip))
            assert value.protocol in set(Protocol)
            assert type(value.frontend_port) is int and 1 <= value.frontend_port <= 65535


def test_json_result_lines_stay_far_below_the_output_limit():
    """Worst case: 16 routes with the longest addresses; every change token of the apply."""
    routes = [VipRoute(f"223.255.254.{i}", "Tcp", 65535 - i, 65535 - i) for i in range(1, 17)]
    spec = GuestRouteSpec("223.255.253.253", "223.255.255.253", "00:0d:3a:12:34:56",
                          "223.255.255.241", 28, routes)
    changes = ([f"+file {gs.BODY_PATH}", f"+file {gs.UNIT_PATH}", f"+enable {gs.UNIT_NAME}",
                "+link up enP12345s1", "+address 223.255.255.253/28 enP12345s1"]
               + [f"+route {v}/32 enP12345s1" for v in spec.vips]
               + [f"+route {spec.secondary_ip}/32 table 100 enP12345s2"]
               + [f"+rule {p.value.lower()} sport {port}" for p, port in spec.narrow_rules]
               + ["+rule local pref 1000", "-rule local pref 0"])
    line = json.dumps({"result": "applied", "os": "linux", "format": 1,
                       "secondary_dev": "enP12345s1", "primary_dev": "enP12345s2", "boot": 0,
                       "changes": changes, "warnings": []}, separators=(",", ":"))
    assert len(line) < 2048
    verify = json.dumps({"verify": [{"vip": "223.255.254.255", "port": 65535, "ok": 200,
                                     "total": 200, "route": False,
                                     "backends": {"x" * 32: 50, "y" * 32: 50,
                                                  "z" * 32: 50, "other": 50}}
                                    for _ in range(16)], "ok": True, "rules": 16,
                         "local_rule": [0, 1000, 1000], "mechanism": "networkmanager"},
                        separators=(",", ":"))
    assert len(verify) < 3500  # and above that the script falls back to a summary line:
    assert 'OUT="{\\"verify\\":[],' in gs.render_linux_verify(SPEC)
