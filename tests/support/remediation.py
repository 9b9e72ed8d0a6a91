"""Shared setup for the remediation tests: the emulator (default scenario, modelled guest)
plus Azurite storage, wired into a ServiceContext exactly as the entry points build it."""

from __future__ import annotations

import copy
import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

import pytest

from emulator.guests.modelled import ModelledGuest
from shared.core.journal import Trigger
from shared.core.schedule import MaintenanceWindow
from shared.core.topology import Topology, topology_from_snapshot
from shared.core.vocab import TriggerKind
from shared.services.context import ServiceContext
from shared.settings import Settings
from shared.storage.journal import Journal
from shared.storage.locks import LockManager

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "emulator" / "scenarios" / "default.json"
SUB = "00000000-0000-0000-0000-000000000001"
RGP = f"/subscriptions/{SUB}/resourceGroups/rg-healthshare/providers"
VM1 = f"{RGP}/Microsoft.Compute/virtualMachines/hs-vm1"
VM2 = f"{RGP}/Microsoft.Compute/virtualMachines/hs-vm2"
NIC1 = f"{RGP}/Microsoft.Network/networkInterfaces/hs-vm1-hairpin-nic"
NIC2 = f"{RGP}/Microsoft.Network/networkInterfaces/hs-vm2-hairpin-nic"
CLI = Trigger(TriggerKind.CLI, principal="tester")
APPLY = Settings(mode="apply")
WINDOW = MaintenanceWindow.parse("Sat 01:00-05:00 UTC")
# A Saturday inside WINDOW and a Wednesday outside it.
IN_WINDOW = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)
OUT_OF_WINDOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def default_scenario() -> dict:
    return json.loads(DEFAULT.read_text())


def topology_with(doc: dict | None = None, power: dict | None = None,
                  tags: dict | None = None) -> tuple[Topology, dict]:
    """The topology of `doc` (default: the default scenario) with VMs' power states and extra
    tags set by VM name, and the document it was read from."""
    doc = copy.deepcopy(doc or default_scenario())
    t = topology_from_snapshot(doc)
    vms = dict(t.vms)
    for key, vm in t.vms.items():
        extra = (tags or {}).get(vm.name)
        vms[key] = dataclasses.replace(
            vm, power_state=(power or {}).get(vm.name, vm.power_state),
            tags=MappingProxyType({**vm.tags, **extra}) if extra else vm.tags)
    return dataclasses.replace(t, vms=MappingProxyType(vms)), doc


def hs_vm1_alone_in_its_pools() -> dict:
    """The default scenario with hs-vm2 taken out of both pools: hs-vm1 is their only member."""
    doc = default_scenario()
    for r in doc["resources"]:
        if r["name"] == "hs-vm2-nic":
            r["properties"]["ipConfigurations"][0]["properties"][
                "loadBalancerBackendAddressPools"] = []
        if r["type"].endswith("loadBalancers"):
            for pool in r["properties"]["backendAddressPools"]:
                for key in ("backendIPConfigurations", "loadBalancerBackendAddresses"):
                    pool["properties"][key] = [x for x in pool["properties"].get(key) or []
                                               if "hs-vm2-nic" not in str(x)]
    return doc


def settings_for(storage_ns, **overrides) -> Settings:
    values = dict(mode="apply", storage_connection=storage_ns.connection_string,
                  storage_prefix=storage_ns.prefix, lock_lease_seconds=15,
                  verify_connects=20)
    values.update(overrides)
    return Settings(**values)


def make_ctx(emu, storage_ns, *, clock=None, deadline=None, **overrides) -> ServiceContext:
    from azure.identity import ManagedIdentityCredential

    settings = settings_for(storage_ns, arm_endpoint=emu.base_url,
                            metrics_endpoint=emu.metrics_endpoint, **overrides)
    ctx = ServiceContext(settings, credential=ManagedIdentityCredential(), polling_interval=0,
                         deadline=deadline)
    names = settings.storage_names
    ctx.journal = Journal(storage_ns.table_service(), table=names.journal_table,
                          state_table=names.state_table).ensure()
    ctx.locks = LockManager(storage_ns.blob_service(), container=names.lock_container,
                            lease_seconds=15, holder="test").ensure()
    ctx.run_command_backoff = 0.05
    ctx.agent_poll_interval = 0.05
    if clock is not None:
        ctx.clock = clock
    return ctx


@pytest.fixture
def estate(emulator, storage_ns):
    """Factory: estate(scenario=None, **settings) -> (emu, guest, ctx)."""

    def make(scenario=None, *, clock=None, deadline=None, emu_kwargs=None, **overrides):
        guest = ModelledGuest()
        emu = emulator(scenario if scenario is not None else default_scenario(), guest,
                       **(emu_kwargs or {}))
        guest.attach(emu)
        ctx = make_ctx(emu, storage_ns, clock=clock, deadline=deadline, **overrides)
        return emu, guest, ctx

    return make


def arm_writes(emu) -> list:
    return [e for e in emu.requests.writes() if e.status and e.status < 400]


def nics_named(emu, name: str) -> list[dict]:
    return [d for d in emu.store.of_type("Microsoft.Network/networkInterfaces")
            if d["name"].lower() == name.lower()]


def vm_nic_ids(emu, vm_id: str) -> list[str]:
    doc = emu.store.get(vm_id)
    return [r["id"] for r in doc["properties"]["networkProfile"]["networkInterfaces"]]
