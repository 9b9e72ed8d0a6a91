"""Pure: an immutable model of an Azure estate, built from raw ARM documents.

Input is exactly what ARM (or Resource Graph) returns: VM, NIC, VNet, subnet and load balancer
documents, `Microsoft.Compute/skus` list items, and per-rule health responses. Nothing here
trusts a field to be present or well-typed: a missing or odd value becomes `None` plus an
`Unknown` fact (resource, field, what was wrong) that findings report, never an exception.

Every ID is compared through its normalised key (`arm_ids.normalize`: lowercase); objects keep
the ID as ARM spelled it in `id` and the comparison form in `key`.
"""

from __future__ import annotations

import contextlib
import gc
import ipaddress
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from shared import ipam
from shared.arm_ids import normalize

__all__ = [
    "Unknown",
    "IpConfig",
    "Nic",
    "Vm",
    "Subnet",
    "VNet",
    "Frontend",
    "Probe",
    "LbRule",
    "NatRule",
    "PoolAddress",
    "PoolMember",
    "BackendPool",
    "LoadBalancer",
    "Sku",
    "BackendHealth",
    "RuleHealth",
    "Topology",
    "gc_paused",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_EMPTY: Mapping[str, Any] = MappingProxyType({})

T_VM = "microsoft.compute/virtualmachines"
T_NIC = "microsoft.network/networkinterfaces"
T_VNET = "microsoft.network/virtualnetworks"
T_SUBNET = "microsoft.network/virtualnetworks/subnets"
T_LB = "microsoft.network/loadbalancers"


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small immutable objects.

    The model has no reference cycles; with tens of thousands of documents alive, automatic
    full collections otherwise cost as much as the work itself (measured: half the time of
    bench/bench_evaluate.py). Restores the previous state, also on error.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# --------------------------------------------------------------------------- model


@dataclass(frozen=True, slots=True)
class Unknown:
    """A fact the documents did not give us (so conclusions that need it are 'unknown')."""

    resource_id: str
    field: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"resource_id": self.resource_id, "field": self.field, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class IpConfig:
    id: str
    key: str
    name: str
    nic_key: str
    private_ip: (
        str | None
    )  # canonical text ("10.0.1.10"); ipaddress objects only where math is done
    subnet_id: str | None
    subnet_key: str | None
    primary: bool | None
    # NIC-side pool references (ipConfiguration.loadBalancerBackendAddressPools).
    pool_keys: tuple[str, ...] = ()

    @property
    def vnet_key(self) -> str | None:
        return _vnet_of_subnet(self.subnet_key)


@dataclass(frozen=True, slots=True)
class Nic:
    id: str
    key: str
    name: str
    location: str | None
    tags: Mapping[str, str]
    ip_configs: tuple[IpConfig, ...]
    primary: bool | None
    accelerated_networking: bool | None
    ip_forwarding: bool | None
    nsg_id: str | None
    mac: str | None
    vm_id: str | None  # NIC's own back-reference (properties.virtualMachine)

    @property
    def primary_ip_config(self) -> IpConfig | None:
        for cfg in self.ip_configs:
            if cfg.primary:
                return cfg
        return self.ip_configs[0] if len(self.ip_configs) == 1 else None

    @property
    def vnet_key(self) -> str | None:
        cfg = self.primary_ip_config
        return cfg.vnet_key if cfg else None

    def has_tag(self, name: str) -> bool:
        low = name.lower()
        return any(k.lower() == low for k in self.tags)


@dataclass(frozen=True, slots=True)
class Vm:
    id: str
    key: str
    name: str
    location: str | None
    size: str | None
    os_type: str | None  # "Windows" | "Linux" | None
    power_state: str | None  # "running", "deallocated", "stopped", ... or None
    agent_ready: bool | None
    tags: Mapping[str, str]
    nic_keys: tuple[str, ...]  # primary NIC first, then ARM order
    primary_nic_key: str | None

    @property
    def is_running(self) -> bool:
        return self.power_state == "running"

    def tag(self, name: str) -> str | None:
        low = name.lower()
        for k, v in self.tags.items():
            if k.lower() == low:
                return v
        return None


@dataclass(frozen=True, slots=True)
class Subnet:
    id: str
    key: str
    name: str
    vnet_key: str
    prefix: ipaddress.IPv4Network | ipaddress.IPv6Network | None
    ip_config_ids: tuple[str, ...]  # back-references as the VNet document lists them

    @property
    def gateway(self) -> str | None:
        """First usable address (Azure's default gateway), or None when the prefix is unknown."""
        try:
            return str(ipam.gateway(self.prefix)) if self.prefix is not None else None
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class VNet:
    id: str
    key: str
    name: str
    location: str | None
    address_prefixes: tuple[str, ...]
    subnet_keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Frontend:
    id: str
    key: str
    name: str
    lb_key: str
    private_ip: str | None
    subnet_key: str | None
    public_ip_id: str | None  # publicIPAddress or publicIPPrefix reference

    @property
    def is_public(self) -> bool:
        return self.public_ip_id is not None

    @property
    def is_internal(self) -> bool:
        return self.public_ip_id is None and (
            self.private_ip is not None or self.subnet_key is not None
        )


@dataclass(frozen=True, slots=True)
class Probe:
    id: str
    key: str
    name: str
    protocol: str | None
    port: int | None
    request_path: str | None


@dataclass(frozen=True, slots=True)
class LbRule:
    id: str
    key: str
    name: str
    lb_key: str
    frontend_key: str | None
    pool_keys: tuple[str, ...]
    probe_key: str | None
    protocol: str | None  # "Tcp" | "Udp" | "All"
    frontend_port: int | None
    backend_port: int | None
    floating_ip: bool | None

    @property
    def is_ha_ports(self) -> bool:
        """HA ports: protocol All, ports 0: every port of every protocol is balanced."""
        return (self.protocol or "").lower() == "all" and self.frontend_port == 0


@dataclass(frozen=True, slots=True)
class NatRule:
    id: str
    key: str
    name: str
    lb_key: str
    frontend_key: str | None
    protocol: str | None
    frontend_port: int | None
    backend_port: int | None
    floating_ip: bool | None
    ip_config_key: str | None  # backendIPConfiguration (single-VM NAT rules)


@dataclass(frozen=True, slots=True)
class PoolAddress:
    """An IP-based pool entry (loadBalancerBackendAddresses with ipAddress + virtualNetwork)."""

    name: str | None
    ip: str | None
    vnet_key: str | None


@dataclass(frozen=True, slots=True)
class PoolMember:
    """One backend of a pool: a NIC ipConfiguration we know, or an address we could not match."""

    ip_config_key: str | None
    ip: str | None
    via: str  # "nic" (NIC-based pool) | "ip" (IP-based pool entry)


@dataclass(frozen=True, slots=True)
class BackendPool:
    id: str
    key: str
    name: str
    lb_key: str
    vnet_key: str | None
    addresses: tuple[PoolAddress, ...]


@dataclass(frozen=True, slots=True)
class LoadBalancer:
    id: str
    key: str
    name: str
    location: str | None
    sku: str | None  # "Standard" | "Basic" | "Gateway" | None
    tags: Mapping[str, str]
    frontend_keys: tuple[str, ...]
    rule_keys: tuple[str, ...]
    pool_keys: tuple[str, ...]
    probe_keys: tuple[str, ...]
    nat_rules: tuple[NatRule, ...]


@dataclass(frozen=True, slots=True)
class Sku:
    name: str
    max_nics: int | None
    accelerated_networking: bool | None
    locations: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BackendHealth:
    ip: str | None
    ip_config_key: str | None
    state: str | None  # "Up" | "Down" | ...
    reason: str | None


@dataclass(frozen=True, slots=True)
class RuleHealth:
    rule_key: str
    up: int | None
    down: int | None
    backends: tuple[BackendHealth, ...]

    def state_of(self, ip_config_key: str | None, ip: object) -> str | None:
        """'Up'/'Down'/... for a backend, matched by ipConfiguration ID first, then by IP."""
        if ip_config_key is not None:
            for b in self.backends:
                if b.ip_config_key == ip_config_key:
                    return b.state
        if ip is not None:
            ip_text = str(ip)
            for b in self.backends:
                if b.ip == ip_text:
                    return b.state
        return None


# --------------------------------------------------------------------------- small readers


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else _EMPTY


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _bool(value: Any) -> bool | None:
    if value is True or value is False:
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _ref(value: Any) -> str | None:
    """`{"id": "..."}` -> the id text."""
    if type(value) is dict:
        rid = value.get("id")
        if type(rid) is str and rid:
            return rid
    return None


_IPV4 = re.compile(
    r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}"
)


def _ip(value: Any) -> str | None:
    """Canonical address text, or None. Dotted-quad IPv4 (the common case) skips `ipaddress`."""
    if not isinstance(value, str):
        return None
    if _IPV4.fullmatch(value):
        return value
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def _tags(value: Any) -> Mapping[str, str]:
    if not isinstance(value, dict) or not value:
        return _EMPTY
    return MappingProxyType({str(k): str(v) for k, v in value.items()})


def _vnet_of_subnet(subnet_key: str | None) -> str | None:
    if subnet_key is None:
        return None
    head, sep, _ = subnet_key.rpartition("/subnets/")
    return head if sep else None


def _parent_key(key: str, child_segment: str) -> str:
    """`/.../networkinterfaces/n/ipconfigurations/c` with '/ipconfigurations/' -> NIC key."""
    head, sep, _ = key.rpartition(child_segment)
    return head if sep else key


def _lb_key_of(key: str) -> str:
    # .../providers/microsoft.network/loadbalancers/{name}/{childType}/{child}
    parts = key.split("/")
    try:
        i = parts.index("loadbalancers")
    except ValueError:
        return key
    return "/".join(parts[: i + 2])


def _name(doc: Mapping[str, Any], rid: str) -> str:
    return _str(doc.get("name")) or rid.rstrip("/").rsplit("/", 1)[-1]


def _canonical(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, default=str)


# --------------------------------------------------------------------------- topology


@dataclass(frozen=True)
class Topology:
    """The estate. Mappings are keyed by normalised ID; build with `from_documents`."""

    vms: Mapping[str, Vm]
    nics: Mapping[str, Nic]
    ip_configs: Mapping[str, IpConfig]
    vnets: Mapping[str, VNet]
    subnets: Mapping[str, Subnet]
    load_balancers: Mapping[str, LoadBalancer]
    frontends: Mapping[str, Frontend]
    rules: Mapping[str, LbRule]
    pools: Mapping[str, BackendPool]
    probes: Mapping[str, Probe]
    skus: Mapping[str, Sku]  # lowercase size name
    health: Mapping[str, RuleHealth]  # rule key
    unknowns: tuple[Unknown, ...]
    # indices
    pool_members: Mapping[str, tuple[PoolMember, ...]] = field(repr=False)
    ip_config_pools: Mapping[str, tuple[str, ...]] = field(repr=False)
    pool_rules: Mapping[str, tuple[str, ...]] = field(repr=False)
    nic_vm: Mapping[str, str] = field(repr=False)
    vms_by_name: Mapping[str, tuple[str, ...]] = field(repr=False)
    unknowns_by_resource: Mapping[str, tuple[Unknown, ...]] = field(repr=False)
    ignored_resources: int = 0

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_documents(
        cls, resources: Iterable[Any], skus: Iterable[Any] = (), health: Iterable[Any] = ()
    ) -> Topology:
        with gc_paused():
            return _Builder().build(resources, skus, health)

    @classmethod
    def from_snapshot(cls, doc: Mapping[str, Any]) -> Topology:
        """A snapshot or scenario document: `{"resources", "skus", "health"}` (+ `emulator`)."""
        if not isinstance(doc, dict):
            raise ValueError("snapshot must be a JSON object")
        resources = doc.get("resources")
        if not isinstance(resources, list):
            raise ValueError("snapshot needs a 'resources' list")
        return cls.from_documents(resources, _list(doc.get("skus")), _list(doc.get("health")))

    # ----------------------------------------------------------------- lookups
    def vm(self, id_or_name: str) -> Vm | None:
        """By resource ID, or by name when exactly one VM has that name."""
        found = self.vms.get(normalize(id_or_name))
        if found is not None:
            return found
        keys = self.vms_by_name.get(id_or_name.strip().lower(), ())
        return self.vms[keys[0]] if len(keys) == 1 else None

    def vms_named(self, name: str) -> tuple[Vm, ...]:
        return tuple(self.vms[k] for k in self.vms_by_name.get(name.strip().lower(), ()))

    def nic(self, nic_id: str) -> Nic | None:
        return self.nics.get(normalize(nic_id))

    def ip_config(self, ip_config_id: str) -> IpConfig | None:
        return self.ip_configs.get(normalize(ip_config_id))

    def subnet(self, subnet_id: str) -> Subnet | None:
        return self.subnets.get(normalize(subnet_id))

    def load_balancer(self, lb_id: str) -> LoadBalancer | None:
        return self.load_balancers.get(normalize(lb_id))

    def frontend(self, frontend_id: str) -> Frontend | None:
        return self.frontends.get(normalize(frontend_id))

    def rule(self, rule_id: str) -> LbRule | None:
        return self.rules.get(normalize(rule_id))

    def pool(self, pool_id: str) -> BackendPool | None:
        return self.pools.get(normalize(pool_id))

    def nics_of_vm(self, vm_id: str) -> tuple[Nic, ...]:
        vm = self.vms.get(normalize(vm_id))
        if vm is None:
            return ()
        return tuple(self.nics[k] for k in vm.nic_keys if k in self.nics)

    def vm_of_nic(self, nic_id: str) -> Vm | None:
        key = self.nic_vm.get(normalize(nic_id))
        return self.vms.get(key) if key else None

    def vm_of_ip_config(self, ip_config_id: str) -> Vm | None:
        cfg = self.ip_configs.get(normalize(ip_config_id))
        return self.vm_of_nic(cfg.nic_key) if cfg else None

    def pools_of_ip_config(self, ip_config_id: str) -> tuple[BackendPool, ...]:
        return tuple(
            self.pools[k]
            for k in self.ip_config_pools.get(normalize(ip_config_id), ())
            if k in self.pools
        )

    def members_of_pool(self, pool_id: str) -> tuple[PoolMember, ...]:
        return self.pool_members.get(normalize(pool_id), ())

    def rules_of_pool(self, pool_id: str) -> tuple[LbRule, ...]:
        return tuple(self.rules[k] for k in self.pool_rules.get(normalize(pool_id), ()))

    def health_of_rule(self, rule_id: str) -> RuleHealth | None:
        return self.health.get(normalize(rule_id))

    def sku(self, size: str | None) -> Sku | None:
        return self.skus.get(size.lower()) if size else None

    def unknowns_for(self, *resource_ids: str | None) -> tuple[Unknown, ...]:
        out: list[Unknown] = []
        for rid in resource_ids:
            if rid:
                out.extend(self.unknowns_by_resource.get(normalize(rid), ()))
        return tuple(out)

    def used_ips_in_subnet(self, subnet_id: str) -> frozenset[str]:
        """Addresses taken in a subnet: NIC ipConfigurations and load balancer frontends."""
        key = normalize(subnet_id)
        used = {
            c.private_ip
            for c in self.ip_configs.values()
            if c.subnet_key == key and c.private_ip is not None
        }
        used |= {
            f.private_ip
            for f in self.frontends.values()
            if f.subnet_key == key and f.private_ip is not None
        }
        return frozenset(used)


# --------------------------------------------------------------------------- builder


class _Builder:
    """Mutable scratch space for one `from_documents` call (keeps Topology itself immutable)."""

    def __init__(self) -> None:
        self.unknowns: list[Unknown] = []
        self.docs: dict[str, dict[str, tuple[str, Mapping[str, Any]]]] = {
            T_VM: {},
            T_NIC: {},
            T_VNET: {},
            T_SUBNET: {},
            T_LB: {},
        }
        self.ignored = 0

    def unknown(self, rid: str, field_name: str, detail: str) -> None:
        self.unknowns.append(Unknown(rid, field_name, detail))

    # ----------------------------------------------------------------- collect
    def collect(self, resources: Iterable[Any]) -> None:
        for index, doc in enumerate(resources if resources is not None else ()):
            if not isinstance(doc, dict):
                self.unknown(f"resources[{index}]", "document", "not a JSON object; ignored")
                continue
            rid = _str(doc.get("id"))
            rtype = _str(doc.get("type"))
            if rid is None or rtype is None:
                self.unknown(rid or f"resources[{index}]", "id/type", "missing; document ignored")
                continue
            bucket = self.docs.get(rtype.lower())
            if bucket is None:
                self.ignored += 1  # NSGs, public IPs, disks...: not needed by the model
                continue
            key = normalize(rid)
            if key in bucket:
                # Same resource twice (overlapping pages, two discovery paths): keep one,
                # chosen by content so the result does not depend on input order.
                kept = bucket[key][1]
                if _canonical(doc) < _canonical(kept):
                    bucket[key] = (rid, doc)
                self.unknown(key, "id", "resource listed more than once; one copy kept")
                continue
            bucket[key] = (rid, doc)

    # ----------------------------------------------------------------- build
    def build(
        self, resources: Iterable[Any], skus: Iterable[Any], health: Iterable[Any]
    ) -> Topology:
        self.collect(resources)
        vnets, subnets = self.build_network()
        nics, ip_configs = self.build_nics()
        vms, nic_vm = self.build_vms(nics)
        (lbs, frontends, rules, pools, probes, pool_refs) = self.build_lbs()
        pool_members, ip_config_pools = self.link_pools(nics, ip_configs, pools, pool_refs)
        pool_rules: dict[str, list[str]] = {}
        for rule in rules.values():
            for pk in rule.pool_keys:
                pool_rules.setdefault(pk, []).append(rule.key)
        sku_map = self.build_skus(skus)
        health_map = self.build_health(health)

        by_name: dict[str, list[str]] = {}
        for vm in vms.values():
            by_name.setdefault(vm.name.lower(), []).append(vm.key)
        by_resource: dict[str, list[Unknown]] = {}
        for u in self.unknowns:
            by_resource.setdefault(normalize(u.resource_id), []).append(u)
        ordered_unknowns = tuple(
            sorted(set(self.unknowns), key=lambda u: (u.resource_id.lower(), u.field, u.detail))
        )

        frozen = MappingProxyType
        return Topology(
            vms=frozen(vms),
            nics=frozen(nics),
            ip_configs=frozen(ip_configs),
            vnets=frozen(vnets),
            subnets=frozen(subnets),
            load_balancers=frozen(lbs),
            frontends=frozen(frontends),
            rules=frozen(rules),
            pools=frozen(pools),
            probes=frozen(probes),
            skus=frozen(sku_map),
            health=frozen(health_map),
            unknowns=ordered_unknowns,
            pool_members=frozen(pool_members),
            ip_config_pools=frozen({k: tuple(sorted(v)) for k, v in ip_config_pools.items()}),
            pool_rules=frozen({k: tuple(sorted(v)) for k, v in pool_rules.items()}),
            nic_vm=frozen(nic_vm),
            vms_by_name=frozen({k: tuple(sorted(v)) for k, v in by_name.items()}),
            unknowns_by_resource=frozen(
                {
                    k: tuple(sorted(set(v), key=lambda u: (u.field, u.detail)))
                    for k, v in by_resource.items()
                }
            ),
            ignored_resources=self.ignored,
        )

    # ----------------------------------------------------------------- networks
    def _subnet(self, rid: str, doc: Mapping[str, Any], vnet_key: str) -> Subnet:
        props = _dict(doc.get("properties"))
        prefix_text = _str(props.get("addressPrefix"))
        if prefix_text is None:
            prefixes = [p for p in _list(props.get("addressPrefixes")) if isinstance(p, str)]
            prefix_text = prefixes[0] if prefixes else None
        prefix = None
        if prefix_text is None:
            self.unknown(rid, "addressPrefix", "missing: gateway and free addresses unknown")
        else:
            try:
                prefix = ipaddress.ip_network(prefix_text, strict=False)
            except ValueError:
                self.unknown(rid, "addressPrefix", f"not a prefix: {prefix_text!r}")
        refs = tuple(r for r in (_ref(x) for x in _list(props.get("ipConfigurations"))) if r)
        return Subnet(rid, normalize(rid), _name(doc, rid), vnet_key, prefix, refs)

    def build_network(self) -> tuple[dict[str, VNet], dict[str, Subnet]]:
        vnets: dict[str, VNet] = {}
        subnets: dict[str, Subnet] = {}
        for key, (rid, doc) in self.docs[T_VNET].items():
            props = _dict(doc.get("properties"))
            subnet_keys = []
            for sub in _list(props.get("subnets")):
                sid = _str(_dict(sub).get("id"))
                if sid is None:
                    self.unknown(rid, "subnets", "a subnet without an id; ignored")
                    continue
                subnet = self._subnet(sid, _dict(sub), key)
                subnets[subnet.key] = subnet
                subnet_keys.append(subnet.key)
            prefixes = tuple(
                p
                for p in _list(_dict(props.get("addressSpace")).get("addressPrefixes"))
                if isinstance(p, str)
            )
            vnets[key] = VNet(
                rid,
                key,
                _name(doc, rid),
                _str(doc.get("location")),
                prefixes,
                tuple(sorted(subnet_keys)),
            )
        # Standalone subnet documents (GET .../subnets/{name}) complete or override.
        for key, (rid, doc) in self.docs[T_SUBNET].items():
            subnets[key] = self._subnet(rid, doc, _vnet_of_subnet(key) or key)
        return vnets, subnets

    # ----------------------------------------------------------------- NICs
    def build_nics(self) -> tuple[dict[str, Nic], dict[str, IpConfig]]:
        # The hot loop of large estates (20,000 NICs in the benchmark): dictionary reads are
        # inlined for well-formed documents and fall back to the tolerant readers otherwise.
        nics: dict[str, Nic] = {}
        ip_configs: dict[str, IpConfig] = {}
        for key, (rid, doc) in self.docs[T_NIC].items():
            props = doc.get("properties")
            if type(props) is not dict:
                props = _EMPTY
            configs = []
            raw_configs = props.get("ipConfigurations")
            if type(raw_configs) is not list or not raw_configs:
                raw_configs = []
                self.unknown(rid, "ipConfigurations", "missing: the NIC's addresses are unknown")
            for raw in raw_configs:
                if type(raw) is not dict:
                    raw = _EMPTY
                cid = raw.get("id")
                if type(cid) is not str or not cid:
                    self.unknown(
                        rid, "ipConfigurations", "an ipConfiguration without an id; ignored"
                    )
                    continue
                cprops = raw.get("properties")
                if type(cprops) is not dict:
                    cprops = _EMPTY
                ip_text = cprops.get("privateIPAddress")
                ip = _ip(ip_text)
                if ip is None:
                    self.unknown(
                        cid,
                        "privateIPAddress",
                        "missing" if ip_text is None else f"not an address: {ip_text!r}",
                    )
                subnet_id = _ref(cprops.get("subnet"))
                if subnet_id is None:
                    self.unknown(cid, "subnet", "missing: subnet and VNet unknown")
                pool_refs = cprops.get("loadBalancerBackendAddressPools")
                if pool_refs:
                    pools = tuple(
                        sorted({normalize(r) for r in (_ref(p) for p in _list(pool_refs)) if r})
                    )
                else:
                    pools = ()
                name = raw.get("name")
                cfg = IpConfig(
                    cid,
                    normalize(cid),
                    name if type(name) is str and name else _name(raw, cid),
                    key,
                    ip,
                    subnet_id,
                    normalize(subnet_id) if subnet_id else None,
                    _bool(cprops.get("primary")),
                    pools,
                )
                configs.append(cfg)
                ip_configs[cfg.key] = cfg
            if len(configs) == 1 and configs[0].primary is None:
                # ARM omits `primary` on single-config NICs in some API versions: it is primary.
                configs[0] = _replace_primary(configs[0])
                ip_configs[configs[0].key] = configs[0]
            name = doc.get("name")
            tags = doc.get("tags")
            nics[key] = Nic(
                rid,
                key,
                name if type(name) is str and name else _name(doc, rid),
                _str(doc.get("location")),
                _tags(tags) if tags else _EMPTY,
                tuple(configs),
                _bool(props.get("primary")),
                _bool(props.get("enableAcceleratedNetworking")),
                _bool(props.get("enableIPForwarding")),
                _ref(props.get("networkSecurityGroup")),
                _str(props.get("macAddress")),
                _ref(props.get("virtualMachine")),
            )
        return nics, ip_configs

    # ----------------------------------------------------------------- VMs
    def build_vms(self, nics: dict[str, Nic]) -> tuple[dict[str, Vm], dict[str, str]]:
        vms: dict[str, Vm] = {}
        nic_vm: dict[str, str] = {}
        claims: dict[str, list[tuple[str, str]]] = {}
        for key, (rid, doc) in self.docs[T_VM].items():
            props = _dict(doc.get("properties"))
            size = _str(_dict(props.get("hardwareProfile")).get("vmSize"))
            if size is None:
                self.unknown(rid, "hardwareProfile.vmSize", "missing: NIC limit unknown")
            os_type = _os_type(props)
            if os_type is None:
                self.unknown(rid, "storageProfile.osDisk.osType", "missing: guest OS unknown")
            power, agent = _instance_view(props)
            if power is None:
                self.unknown(rid, "instanceView.statuses", "no PowerState: power state unknown")
            refs: list[tuple[str, bool | None]] = []
            for item in _list(_dict(props.get("networkProfile")).get("networkInterfaces")):
                nid = _ref(item)
                if nid:
                    primary = _bool(_dict(_dict(item).get("properties")).get("primary"))
                    if primary is None:
                        primary = _bool(_dict(item).get("primary"))
                    refs.append((normalize(nid), primary))
            if not refs:
                self.unknown(rid, "networkProfile.networkInterfaces", "missing: NICs unknown")
            primary_key = _primary_nic(refs, nics)
            if refs and primary_key is None:
                self.unknown(rid, "networkProfile.networkInterfaces", "no NIC marked primary")
            if len(refs) == 1 and refs[0][0] == primary_key:
                ordered: tuple[str, ...] = (primary_key,)
            else:
                ordered = tuple(
                    dict.fromkeys(([primary_key] if primary_key else []) + [k for k, _ in refs])
                )
            for nk in ordered:
                if nk not in nics:
                    self.unknown(
                        rid, "networkProfile.networkInterfaces", f"NIC {nk} is not in the documents"
                    )
                claims.setdefault(nk, []).append((key, rid))
            vms[key] = Vm(
                rid,
                key,
                _name(doc, rid),
                _str(doc.get("location")),
                size,
                os_type,
                power,
                agent,
                _tags(doc.get("tags")) if doc.get("tags") else _EMPTY,
                ordered,
                primary_key,
            )
        for nk, owners in claims.items():
            if len(owners) > 1:
                for _, owner_id in owners:
                    self.unknown(
                        owner_id,
                        "networkProfile.networkInterfaces",
                        f"NIC {nk} is listed by more than one VM",
                    )
            # deterministic whatever the order
            nic_vm[nk] = owners[0][0] if len(owners) == 1 else min(k for k, _ in owners)
        # NICs whose VM lists nothing (partial documents) still point at their VM.
        for nk, nic in nics.items():
            if nk not in nic_vm and nic.vm_id and normalize(nic.vm_id) in vms:
                nic_vm[nk] = normalize(nic.vm_id)
        return vms, nic_vm

    # ----------------------------------------------------------------- load balancers
    def build_lbs(self):  # noqa: C901 - one pass over one document type, kept together
        lbs: dict[str, LoadBalancer] = {}
        frontends: dict[str, Frontend] = {}
        rules: dict[str, LbRule] = {}
        pools: dict[str, BackendPool] = {}
        probes: dict[str, Probe] = {}
        # pool key -> ipConfiguration keys the pool document lists (NIC-based membership).
        pool_refs: dict[str, set[str]] = {}
        for key, (rid, doc) in self.docs[T_LB].items():
            props = _dict(doc.get("properties"))
            sku = _str(_dict(doc.get("sku")).get("name"))
            fe_keys, rule_keys, pool_keys, probe_keys, nat_rules = [], [], [], [], []
            for raw in _list(props.get("frontendIPConfigurations")):
                raw = _dict(raw)
                fid = _str(raw.get("id"))
                if fid is None:
                    self.unknown(rid, "frontendIPConfigurations", "a frontend without an id")
                    continue
                fp = _dict(raw.get("properties"))
                public = _ref(fp.get("publicIPAddress")) or _ref(fp.get("publicIPPrefix"))
                ip = _ip(fp.get("privateIPAddress"))
                subnet_id = _ref(fp.get("subnet"))
                if public is None and ip is None:
                    self.unknown(fid, "privateIPAddress", "internal frontend without an address")
                fe = Frontend(
                    fid,
                    normalize(fid),
                    _name(raw, fid),
                    key,
                    ip,
                    normalize(subnet_id) if subnet_id else None,
                    public,
                )
                frontends[fe.key] = fe
                fe_keys.append(fe.key)
            for raw in _list(props.get("backendAddressPools")):
                raw = _dict(raw)
                pid = _str(raw.get("id"))
                if pid is None:
                    self.unknown(rid, "backendAddressPools", "a pool without an id")
                    continue
                pkey = normalize(pid)
                pp = _dict(raw.get("properties"))
                pool_vnet = _ref(pp.get("virtualNetwork"))
                refs = pool_refs.setdefault(pkey, set())
                for r in _list(pp.get("backendIPConfigurations")):
                    ref = _ref(r)
                    if ref:
                        refs.add(normalize(ref))
                addresses = []
                for entry in _list(pp.get("loadBalancerBackendAddresses")):
                    entry = _dict(entry)
                    ep = _dict(entry.get("properties"))
                    nic_ref = _ref(ep.get("networkInterfaceIPConfiguration"))
                    if nic_ref:  # NIC-based pools echo their members here too
                        refs.add(normalize(nic_ref))
                        continue
                    vnet = _ref(ep.get("virtualNetwork")) or pool_vnet
                    subnet_ref = _ref(ep.get("subnet"))
                    if vnet is None and subnet_ref:
                        vnet = _vnet_of_subnet(normalize(subnet_ref))
                    ip = _ip(ep.get("ipAddress"))
                    if ip is None:
                        self.unknown(
                            pid,
                            "loadBalancerBackendAddresses",
                            f"entry {entry.get('name')!r} has no usable ipAddress",
                        )
                    addresses.append(
                        PoolAddress(_str(entry.get("name")), ip, normalize(vnet) if vnet else None)
                    )
                pools[pkey] = BackendPool(
                    pid,
                    pkey,
                    _name(raw, pid),
                    key,
                    normalize(pool_vnet) if pool_vnet else None,
                    tuple(addresses),
                )
                pool_keys.append(pkey)
            for raw in _list(props.get("probes")):
                raw = _dict(raw)
                prid = _str(raw.get("id"))
                if prid is None:
                    continue
                pp = _dict(raw.get("properties"))
                probe = Probe(
                    prid,
                    normalize(prid),
                    _name(raw, prid),
                    _str(pp.get("protocol")),
                    _int(pp.get("port")),
                    _str(pp.get("requestPath")),
                )
                probes[probe.key] = probe
                probe_keys.append(probe.key)
            for raw in _list(props.get("loadBalancingRules")):
                raw = _dict(raw)
                rule_id = _str(raw.get("id"))
                if rule_id is None:
                    self.unknown(rid, "loadBalancingRules", "a rule without an id")
                    continue
                rp = _dict(raw.get("properties"))
                fe_ref = _ref(rp.get("frontendIPConfiguration"))
                rule_pools = {
                    normalize(r)
                    for r in [_ref(rp.get("backendAddressPool"))]
                    + [_ref(p) for p in _list(rp.get("backendAddressPools"))]
                    if r
                }
                floating = _bool(rp.get("enableFloatingIP"))
                if floating is None:
                    floating = False  # ARM's default when the property is absent
                rule = LbRule(
                    rule_id,
                    normalize(rule_id),
                    _name(raw, rule_id),
                    key,
                    normalize(fe_ref) if fe_ref else None,
                    tuple(sorted(rule_pools)),
                    normalize(p) if (p := _ref(rp.get("probe"))) else None,
                    _str(rp.get("protocol")),
                    _int(rp.get("frontendPort")),
                    _int(rp.get("backendPort")),
                    floating,
                )
                if rule.frontend_key is None:
                    self.unknown(rule_id, "frontendIPConfiguration", "missing")
                if not rule.pool_keys:
                    self.unknown(rule_id, "backendAddressPool", "missing: the rule has no backends")
                if rule.frontend_port is None or rule.backend_port is None or rule.protocol is None:
                    self.unknown(rule_id, "protocol/ports", "missing: ports unknown")
                rules[rule.key] = rule
                rule_keys.append(rule.key)
            for raw in _list(props.get("inboundNatRules")):
                raw = _dict(raw)
                nid = _str(raw.get("id"))
                if nid is None:
                    continue
                np_ = _dict(raw.get("properties"))
                fe_ref = _ref(np_.get("frontendIPConfiguration"))
                backend = _ref(np_.get("backendIPConfiguration"))
                nat_rules.append(
                    NatRule(
                        nid,
                        normalize(nid),
                        _name(raw, nid),
                        key,
                        normalize(fe_ref) if fe_ref else None,
                        _str(np_.get("protocol")),
                        _int(np_.get("frontendPort")),
                        _int(np_.get("backendPort")),
                        _bool(np_.get("enableFloatingIP")),
                        normalize(backend) if backend else None,
                    )
                )
            lbs[key] = LoadBalancer(
                rid,
                key,
                _name(doc, rid),
                _str(doc.get("location")),
                sku,
                _tags(doc.get("tags")),
                tuple(fe_keys),
                tuple(rule_keys),
                tuple(pool_keys),
                tuple(probe_keys),
                tuple(nat_rules),
            )
        return lbs, frontends, rules, pools, probes, pool_refs

    # ----------------------------------------------------------------- membership
    def link_pools(self, nics, ip_configs, pools, pool_refs):
        """Pool -> members, from both sides of NIC-based pools and by IP for IP-based pools."""
        members: dict[str, dict[tuple, PoolMember]] = {k: {} for k in pools}
        # NIC side: ipConfiguration.loadBalancerBackendAddressPools (pool may be unknown).
        for cfg in ip_configs.values():
            for pk in cfg.pool_keys:
                members.setdefault(pk, {})[("c", cfg.key)] = PoolMember(
                    cfg.key, cfg.private_ip, "nic"
                )
        # Pool side: backendIPConfigurations (the NIC may be outside the documents). A member
        # the NIC side already added is the same value: not built twice.
        for pk, refs in pool_refs.items():
            found = members[pk]
            for ck in refs:
                if ("c", ck) not in found:
                    cfg = ip_configs.get(ck)
                    found[("c", ck)] = PoolMember(ck, cfg.private_ip if cfg else None, "nic")
        # IP-based entries: match a NIC by private IP inside the pool's VNet. Only addresses
        # that some pool names are indexed (most estates have few IP-based pools).
        wanted = {a.ip for pool in pools.values() for a in pool.addresses if a.ip is not None}
        holders: dict[tuple[str | None, str], list[IpConfig]] = {}
        if wanted:
            for cfg in ip_configs.values():
                if cfg.private_ip in wanted:
                    holders.setdefault((cfg.vnet_key, cfg.private_ip), []).append(cfg)
        by_vnet_ip: dict[tuple[str | None, str], str] = {}
        for slot, cfgs in holders.items():
            if len(cfgs) > 1:
                for cfg in cfgs:
                    self.unknown(
                        cfg.id,
                        "privateIPAddress",
                        f"{cfg.private_ip} is used by more than one NIC in the VNet "
                        "(IP-based pool entries cannot tell them apart)",
                    )
            # deterministic whatever the order
            by_vnet_ip[slot] = cfgs[0].key if len(cfgs) == 1 else min(c.key for c in cfgs)
        for pk, pool in pools.items():
            for address in pool.addresses:
                if address.ip is None:
                    continue
                if address.vnet_key is None:
                    self.unknown(
                        pool.id,
                        "virtualNetwork",
                        f"IP-based entry {address.ip} without a VNet: not matched to a NIC",
                    )
                    ck = None
                else:
                    ck = by_vnet_ip.get((address.vnet_key, address.ip))
                if ck is not None:
                    members[pk].setdefault(("c", ck), PoolMember(ck, address.ip, "ip"))
                else:
                    members[pk].setdefault(("a", address.ip), PoolMember(None, address.ip, "ip"))
        pool_members: dict[str, tuple[PoolMember, ...]] = {}
        ip_config_pools: dict[str, set[str]] = {}
        for pk, found in members.items():
            ordered = tuple(found[k] for k in sorted(found))
            pool_members[pk] = ordered
            for m in ordered:
                if m.ip_config_key is not None:
                    ip_config_pools.setdefault(m.ip_config_key, set()).add(pk)
        return pool_members, ip_config_pools

    # ----------------------------------------------------------------- skus and health
    def build_skus(self, skus: Iterable[Any]) -> dict[str, Sku]:
        out: dict[str, Sku] = {}
        for item in skus if skus is not None else ():
            item = _dict(item)
            if (_str(item.get("resourceType")) or "").lower() != "virtualmachines":
                continue
            name = _str(item.get("name"))
            if name is None:
                continue
            caps = {}
            for cap in _list(item.get("capabilities")):
                cap = _dict(cap)
                if isinstance(cap.get("name"), str):
                    caps[cap["name"].lower()] = cap.get("value")
            locations = tuple(sorted(str(x).lower() for x in _list(item.get("locations"))))
            sku = Sku(
                name,
                _int(caps.get("maxnetworkinterfaces")),
                _bool(caps.get("acceleratednetworkingenabled")),
                locations,
            )
            previous = out.get(name.lower())
            if previous is None or (previous.max_nics is None and sku.max_nics is not None):
                out[name.lower()] = sku
            elif previous.max_nics is not None and sku.max_nics is not None:
                # One entry per region: the capability is the same everywhere in practice;
                # keep the smaller limit if two regions ever disagree (never over-promise).
                out[name.lower()] = Sku(
                    previous.name,
                    min(previous.max_nics, sku.max_nics),
                    previous.accelerated_networking,
                    tuple(sorted(set(previous.locations) | set(locations))),
                )
        return out

    def build_health(self, health: Iterable[Any]) -> dict[str, RuleHealth]:
        entries: dict[str, tuple[str, Mapping[str, Any]]] = {}
        for index, entry in enumerate(health if health is not None else ()):
            entry = _dict(entry)
            rule_id = _str(entry.get("ruleId"))
            response = entry.get("response")
            if rule_id is None or not isinstance(response, dict):
                self.unknown(
                    rule_id or f"health[{index}]", "health", "entry without ruleId/response"
                )
                continue
            key = normalize(rule_id)
            if key in entries:
                # The same rule twice: keep one, chosen by content (input order must not matter).
                self.unknown(rule_id, "health", "health listed more than once; one copy kept")
                if _canonical(response) >= _canonical(entries[key][1]):
                    continue
            entries[key] = (rule_id, response)
        out: dict[str, RuleHealth] = {}
        for key, (_rule_id, response) in entries.items():
            backends = []
            for b in _list(response.get("loadBalancerBackendAddresses")):
                b = _dict(b)
                cfg = _str(b.get("networkInterfaceIPConfigurationId"))
                backends.append(
                    BackendHealth(
                        _str(b.get("ipAddress")),
                        normalize(cfg) if cfg else None,
                        _str(b.get("state")),
                        _str(b.get("reason")),
                    )
                )
            backends.sort(
                key=lambda b: (b.ip_config_key or "", b.ip or "", b.state or "", b.reason or "")
            )
            out[key] = RuleHealth(
                key, _int(response.get("up")), _int(response.get("down")), tuple(backends)
            )
        return out


def _replace_primary(cfg: IpConfig) -> IpConfig:
    return IpConfig(
        cfg.id,
        cfg.key,
        cfg.name,
        cfg.nic_key,
        cfg.private_ip,
        cfg.subnet_id,
        cfg.subnet_key,
        True,
        cfg.pool_keys,
    )


def _os_type(props: Mapping[str, Any]) -> str | None:
    value = _str(_dict(_dict(props.get("storageProfile")).get("osDisk")).get("osType"))
    if value:
        low = value.lower()
        return "Windows" if low == "windows" else "Linux" if low == "linux" else value
    os_profile = _dict(props.get("osProfile"))
    if os_profile.get("windowsConfiguration") is not None:
        return "Windows"
    if os_profile.get("linuxConfiguration") is not None:
        return "Linux"
    return None


def _instance_view(props: Mapping[str, Any]) -> tuple[str | None, bool | None]:
    """Power state and agent readiness, from ARM's instanceView or Resource Graph's `extended`."""
    view = _dict(props.get("instanceView"))
    power = None
    for status in _list(view.get("statuses")):
        code = _str(_dict(status).get("code"))
        if code and code.lower().startswith("powerstate/"):
            power = code.split("/", 1)[1].lower()
    if power is None:
        extended = _dict(_dict(_dict(props.get("extended")).get("instanceView")).get("powerState"))
        code = _str(extended.get("code"))
        if code and code.lower().startswith("powerstate/"):
            power = code.split("/", 1)[1].lower()
    agent = None
    agent_statuses = _list(_dict(view.get("vmAgent")).get("statuses"))
    if agent_statuses:
        display = _str(_dict(agent_statuses[0]).get("displayStatus"))
        agent = None if display is None else display.lower() == "ready"
    return power, agent


def _primary_nic(refs: list[tuple[str, bool | None]], nics: Mapping[str, Nic]) -> str | None:
    flagged = [k for k, p in refs if p]
    if flagged:
        return flagged[0]
    if len(refs) == 1:
        return refs[0][0]
    by_nic = [k for k, _ in refs if k in nics and nics[k].primary]
    return by_nic[0] if by_nic else None
