"""A GuestModel that models a guest's route table from the project's own scripts (no root).

For the emulator's default (Windows) scenario, where PowerShell cannot run: it reads the values
our rendered scripts carry (``$Mac``, ``$SecondaryIp``, ``$Gateway``, ``$Vips`` for Windows;
``SECONDARY_MAC=``, ``SECONDARY_IP=``, ``GATEWAY=``, ``WANT_VIPS=`` for Linux; the verification
targets), keeps a per-VM route table (persistent routes survive a reboot, as ``New-NetRoute``'s
persistent store does; active routes need the adapter present at boot), and answers
verification honestly from that model and the emulator's *current* rule health:

- a VIP routed out of an attached secondary NIC: every connect succeeds (the flow leaves with
  the secondary address as source, so the reply returns through the fabric);
- otherwise the connects the load balancer sends to this VM itself time out, and those sent to
  another healthy backend succeed (round robin over the healthy backends, as the fabric does);
  no healthy backend: every connect fails.

Outputs follow the scripts' contract: the last stdout line is one JSON object. Anything that is
not one of our scripts goes to ``fallback`` (a RecordingGuest by default).

    guest = ModelledGuest()
    emu = Emulator(scenario, guest=guest).start()
    guest.attach(emu)
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field

from emulator.guests.recording import RecordingGuest

__all__ = ["ModelledGuest"]

_PS_VAR = re.compile(r"^\$(Mac|SecondaryIp|Gateway|Count)\s*=\s*'?([^'\s]*)'?\s*$")
_PS_VIPS = re.compile(r"^\$Vips\s*=\s*@\((.*)\)\s*$")
_PS_TARGET = re.compile(r"^\$Targets\s*\+=\s*,@\('([0-9.]+)',\s*(\d+)\)\s*$")
_SH_VAR = re.compile(r"^(SECONDARY_MAC|SECONDARY_IP|GATEWAY|COUNT|WANT_VIPS)=(.*)$")
_SH_PROBE = re.compile(r"^probe ([0-9.]+) (\d+)\s*$")


def _norm_mac(mac: str | None) -> str:
    return (mac or "").replace("-", ":").lower()


@dataclass
class _VmState:
    adapters: dict[str, str] = field(default_factory=dict)  # mac -> ip, present since boot
    persistent: dict[str, str] = field(default_factory=dict)  # vip -> mac
    active: dict[str, str] = field(default_factory=dict)  # vip -> mac


class ModelledGuest:
    def __init__(self, fallback=None) -> None:
        self.fallback = fallback if fallback is not None else RecordingGuest()
        self.emu = None
        self._lock = threading.RLock()
        self.vms: dict[str, _VmState] = {}
        self.commands: list[dict] = []  # {"vm", "kind", "result"}
        # Tests: what the read-only preflight probe finds missing, per VM name.
        self.probe_problems: dict[str, list[str]] = {}

    def attach(self, emu) -> ModelledGuest:
        self.emu = emu
        return self

    def _state(self, name: str) -> _VmState:
        return self.vms.setdefault(name.lower(), _VmState())

    # ------------------------------------------------------------------ GuestModel
    def on_start(self, vm: dict, nics: list[dict]) -> None:
        with self._lock:
            st = self._state(vm["name"])
            st.adapters = {}
            for nic in nics:
                props = nic.get("properties") or {}
                ips = [c.get("properties", {}).get("privateIPAddress")
                       for c in props.get("ipConfigurations") or []]
                st.adapters[_norm_mac(props.get("macAddress"))] = next((i for i in ips if i), "")
            # Persistent routes come back when their adapter is there.
            st.active = {vip: mac for vip, mac in st.persistent.items() if mac in st.adapters}
        self.fallback.on_start(vm, nics)

    def on_deallocate(self, vm: dict) -> None:
        with self._lock:
            st = self._state(vm["name"])
            st.adapters = {}
            st.active = {}
        self.fallback.on_deallocate(vm)

    def run_command(self, vm, command_id, script, parameters):
        text = "\n".join(script)
        windows = command_id == "RunPowerShellScript"
        if "azure-ilb-hairpin" not in text:
            return self.fallback.run_command(vm, command_id, script, parameters)
        if "preflight probe" in text:
            kind = "probe"
        elif "verification" in text:
            kind = "verify"
        elif "routes: cleanup" in text:
            kind = "cleanup"
        elif "routes: apply" in text or "routes: install and apply" in text:
            kind = "apply"
        else:
            return self.fallback.run_command(vm, command_id, script, parameters)
        values = self._values(script, windows)
        with self._lock:
            if kind == "probe":
                answer = self._probe(vm, windows)
            elif kind == "apply":
                answer = self._apply(vm, values, windows)
            elif kind == "cleanup":
                answer = self._cleanup(vm, values, windows)
            else:
                answer = self._verify(vm, values)
            self.commands.append({"vm": vm["name"], "kind": kind, "exit": answer[0],
                                  "result": answer[1].strip().splitlines()[-1]})
        return answer

    # ------------------------------------------------------------------ parsing
    @staticmethod
    def _values(script: list[str], windows: bool) -> dict:
        out: dict = {"vips": [], "targets": []}
        for line in script:
            line = line.strip()
            if windows:
                if m := _PS_VAR.match(line):
                    out[m.group(1).lower()] = m.group(2)
                elif m := _PS_VIPS.match(line):
                    out["vips"] = re.findall(r"'([0-9.]+)'", m.group(1))
                elif m := _PS_TARGET.match(line):
                    out["targets"].append((m.group(1), int(m.group(2))))
            else:
                if m := _SH_VAR.match(line):
                    key = {"SECONDARY_MAC": "mac", "SECONDARY_IP": "secondaryip",
                           "GATEWAY": "gateway", "COUNT": "count"}.get(m.group(1))
                    if key:
                        out.setdefault(key, m.group(2).strip("'"))
                    else:
                        out["vips"] = m.group(2).strip("'").split()
                elif m := _SH_PROBE.match(line):
                    out["targets"].append((m.group(1), int(m.group(2))))
        return out

    @staticmethod
    def _out(result: dict, code: int = 0, err: str = "") -> tuple[int, str, str]:
        return code, json.dumps(result, separators=(",", ":")) + "\n", err

    # ------------------------------------------------------------------ scripts
    def _probe(self, vm, windows):
        """The preflight probe's answer: a guest with every prerequisite, unless told."""
        problems = list(self.probe_problems.get(vm["name"].lower(), ()))
        found = ({"powershell": "5.1", "adapters": 1} if windows else
                 {"iproute2_selectors": True, "kernel": "6.1.0-emulated", "stack": "none"})
        return self._out({"probe": {**found, "primary_mac_found": True}, "problems": problems,
                          "ok": not problems})

    def _apply(self, vm, v, windows):
        st = self._state(vm["name"])
        os_name = "windows" if windows else "linux"
        mac = _norm_mac(v.get("mac"))
        if mac not in st.adapters:
            msg = f"no single (non-VF) adapter with MAC {v.get('mac')}"
            return self._out({"result": "error", "os": os_name, "error": "nic_not_found",
                              "message": msg, "changes": []}, 3, f"hairpin: error: {msg}")
        if st.adapters[mac] != v.get("secondaryip"):
            msg = f"adapter does not hold {v.get('secondaryip')} yet (DHCP)"
            return self._out({"result": "error", "os": os_name, "error": "address_missing",
                              "message": msg, "changes": []}, 5, f"hairpin: error: {msg}")
        changes = []
        for vip in v["vips"]:
            if st.active.get(vip) != mac or st.persistent.get(vip) != mac:
                st.active[vip] = mac
                st.persistent[vip] = mac
                changes.append(f"+route {vip}/32")
        if not windows:  # the Linux body also drops routes the values no longer want
            for vip in [x for x, m in st.persistent.items() if x not in v["vips"]]:
                st.persistent.pop(vip, None)
                st.active.pop(vip, None)
                changes.append(f"-route {vip}/32")
        return self._out({"result": "applied" if changes else "unchanged", "os": os_name,
                          "format": 1, "changes": changes})

    def _cleanup(self, vm, v, windows):
        st = self._state(vm["name"])
        changes = []
        vips = v["vips"] if windows else list(st.persistent)
        for vip in vips:
            if vip in st.persistent or vip in st.active:
                st.persistent.pop(vip, None)
                st.active.pop(vip, None)
                changes.append(f"-route {vip}/32")
        return self._out({"result": "cleaned" if changes else "unchanged",
                          "os": "windows" if windows else "linux", "format": 1,
                          "changes": changes})

    def _verify(self, vm, v):
        st = self._state(vm["name"])
        count = int(v.get("count") or 20)
        results, all_ok = [], True
        for vip, port in v["targets"]:
            routed = vip in st.active and st.active[vip] in st.adapters
            up, own = self._healthy(vm, vip, port)
            backends: dict[str, int] = {}
            if routed:
                # Through the secondary NIC every flow returns via the fabric.
                ok = count if up else 0
                for i in range(ok):
                    name = up[i % len(up)][1]
                    backends[name] = backends.get(name, 0) + 1
            else:
                ok = 0
                for i in range(count if up else 0):
                    cfg, name = up[i % len(up)]
                    if cfg in own:
                        continue  # mapped back to itself: times out
                    ok += 1
                    backends[name] = backends.get(name, 0) + 1
            all_ok = all_ok and ok == count
            results.append({"vip": vip, "port": port, "ok": ok, "total": count,
                            "backends": backends})
        return self._out({"verify": results, "ok": all_ok}, 0 if all_ok else 1)

    # ------------------------------------------------------------------ the fabric's view
    def _healthy(self, vm: dict, vip: str, port: int) -> tuple[list[tuple[str, str]], set[str]]:
        """Healthy backends [(ipconfig id lower, vm name)] of the rules on vip:port, and the
        ipconfig ids (lower) of this VM."""
        emu = self.emu
        if emu is None:
            return [], set()
        from emulator.resources import health, types
        from emulator.state import lower, parent_id

        with emu.lock:
            own = set()
            for ref in (vm.get("properties", {}).get("networkProfile", {})
                        .get("networkInterfaces") or []):
                nic = emu.store.raw(ref.get("id", "")) or {}
                for c in nic.get("properties", {}).get("ipConfigurations") or []:
                    own.add(lower(c.get("id", "")))
            up: list[tuple[str, str]] = []
            for lb in emu.store.of_type(types.LB):
                fes = {lower(fe["id"]) for fe in lb.get("properties", {}).get(
                    "frontendIPConfigurations") or []
                    if fe.get("properties", {}).get("privateIPAddress") == vip}
                if not fes:
                    continue
                for rule in lb.get("properties", {}).get("loadBalancingRules") or []:
                    rp = rule.get("properties", {})
                    if lower((rp.get("frontendIPConfiguration") or {}).get("id", "")) not in fes:
                        continue
                    if rp.get("frontendPort") not in (port, 0):
                        continue
                    body = health.rule_health(emu, lb["id"], rule["name"])
                    for b in body.get("loadBalancerBackendAddresses", []):
                        if b.get("state") != "Up":
                            continue
                        cfg = lower(b.get("networkInterfaceIPConfigurationId") or "")
                        nic = emu.store.raw(parent_id(cfg)) if cfg else None
                        owner = ((nic or {}).get("properties", {}).get("virtualMachine")
                                 or {}).get("id", "")
                        name = owner.rstrip("/").split("/")[-1] if owner else b.get("ipAddress")
                        up.append((cfg, name))
            up.sort()
            return up, own
