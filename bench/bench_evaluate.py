"""Benchmark: evaluate a generated estate of 10,000 VMs, 20,000 NICs and 1,000 ILBs.

Each ILB has 2-5 internal frontends (some with a Floating IP rule, every tenth ILB also a
public frontend), one or two TCP rules per frontend, and NIC-based pools of 2-4 VMs drawn from
the ILB's own group of ten VMs (mirror-like; a few IP-based pools). Every VM has two NICs (the
second is a data NIC in no pool), half the rules have health (one member Up).

Targets: building the topology from the raw documents plus the evaluation (Topology.from_documents
+ risk.evaluate: documents + settings -> findings) under 1 s together, and the process under
500 MB. Build and evaluation are also printed separately. Times are the best of --repeat runs, as
CPU time of this process, because the benchmark machine is shared; the previous run's results
are released before the next run starts, so freeing them is not timed.

    .venv/bin/python bench/bench_evaluate.py [--vms 10000] [--lbs 1000]
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.core.risk import evaluate  # noqa: E402
from shared.core.topology import build_topology
from shared.settings import Settings  # noqa: E402

SUB = "00000000-0000-0000-0000-00000000beef"
SIZES = [("Standard_D4s_v3", 2), ("Standard_D8s_v3", 4), ("Standard_D16s_v3", 8)]


def generate(n_vms: int = 10_000, n_lbs: int = 1_000, seed: int = 42):
    rnd = random.Random(seed)
    rg = f"/subscriptions/{SUB}/resourceGroups/rg-bench/providers"
    net = f"{rg}/Microsoft.Network"
    resources: list[dict] = []
    health: list[dict] = []
    # One VNet per 250 VMs, one /24 subnet per 250 VMs (room for frontends and new NICs).
    n_vnets = max(1, n_vms // 250)
    for v in range(n_vnets):
        vid = f"{net}/virtualNetworks/vnet{v}"
        resources.append(
            {
                "id": vid,
                "name": f"vnet{v}",
                "type": "Microsoft.Network/virtualNetworks",
                "location": "eastus",
                "properties": {
                    "addressSpace": {"addressPrefixes": [f"10.{v // 256}.{v % 256}.0/24"]},
                    "subnets": [
                        {
                            "id": f"{vid}/subnets/default",
                            "name": "default",
                            "properties": {"addressPrefix": f"10.{v // 256}.{v % 256}.0/24"},
                        }
                    ],
                },
            }
        )
    nic_docs: dict[int, list[dict]] = {}
    for i in range(n_vms):
        v = i // 250
        subnet = f"{net}/virtualNetworks/vnet{v}/subnets/default"
        base = i % 250
        vm_id = f"{rg}/Microsoft.Compute/virtualMachines/vm{i}"
        nics = []
        for n in range(2):
            nid = f"{net}/networkInterfaces/vm{i}-nic{n}"
            ip = None  # filled in below
            nics.append(
                {
                    "id": nid,
                    "name": f"vm{i}-nic{n}",
                    "type": "Microsoft.Network/networkInterfaces",
                    "location": "eastus",
                    "tags": {},
                    "properties": {
                        "primary": n == 0,
                        "enableAcceleratedNetworking": True,
                        "macAddress": "00-0D-3A-"
                        + "-".join(f"{b:02X}" for b in (i // 65536 % 256, i // 256 % 256, i % 256)),
                        "networkSecurityGroup": {"id": f"{net}/networkSecurityGroups/nsg"},
                        "virtualMachine": {"id": vm_id},
                        "ipConfigurations": [
                            {
                                "id": f"{nid}/ipConfigurations/ipconfig1",
                                "name": "ipconfig1",
                                "properties": {
                                    "privateIPAddress": ip,
                                    "primary": True,
                                    "subnet": {"id": subnet},
                                    "loadBalancerBackendAddressPools": [],
                                },
                            }
                        ],
                    },
                }
            )
        nic_docs[i] = nics
        size, _ = SIZES[i % 3]
        resources.append(
            {
                "id": vm_id,
                "name": f"vm{i}",
                "type": "Microsoft.Compute/virtualMachines",
                "location": "eastus",
                "tags": {"hairpin-calls": "10.200.0.1:1972"} if i % 7 == 0 else {},
                "properties": {
                    "hardwareProfile": {"vmSize": size},
                    "storageProfile": {"osDisk": {"osType": "Linux" if i % 2 else "Windows"}},
                    "networkProfile": {
                        "networkInterfaces": [
                            {"id": nics[0]["id"], "properties": {"primary": True}},
                            {"id": nics[1]["id"], "properties": {"primary": False}},
                        ]
                    },
                    "instanceView": {
                        "statuses": [
                            {"code": "ProvisioningState/succeeded"},
                            {"code": "PowerState/running" if i % 50 else "PowerState/deallocated"},
                        ]
                    },
                },
            }
        )
    # Fill in unique addresses: 250 VMs x 2 NICs = 500 per /24 does not fit, so data NICs
    # live in a second address range of the same VNet (10.128+v).
    for i, nics in nic_docs.items():
        v = i // 250
        base = i % 250
        nics[0]["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"] = (
            f"10.{v // 256}.{v % 256}.{4 + base}"
        )
        data_subnet = f"{net}/virtualNetworks/vnet{v}/subnets/data"
        nics[1]["properties"]["ipConfigurations"][0]["properties"].update(
            {
                "privateIPAddress": f"10.{128 + v // 256}.{v % 256}.{4 + base}",
                "subnet": {"id": data_subnet},
            }
        )
    group = max(2, n_vms // n_lbs)
    for lb_index in range(n_lbs):
        lb_id = f"{net}/loadBalancers/ilb{lb_index}"
        members_pool = list(range(lb_index * group, min(n_vms, (lb_index + 1) * group)))
        v = (members_pool[0] if members_pool else 0) // 250
        subnet = f"{net}/virtualNetworks/vnet{v}/subnets/default"
        fes, pools, rules, probes = [], [], [], []
        for f in range(rnd.randint(2, 5)):
            fe_id = f"{lb_id}/frontendIPConfigurations/fe{f}"
            fes.append(
                {
                    "id": fe_id,
                    "name": f"fe{f}",
                    "properties": {
                        "privateIPAddress": f"10.{200 + lb_index // 256}.{lb_index % 256}.{f + 1}",
                        "subnet": {"id": subnet},
                    },
                }
            )
            pool_id = f"{lb_id}/backendAddressPools/pool{f}"
            chosen = rnd.sample(members_pool, min(len(members_pool), rnd.randint(2, 4)))
            ip_based = lb_index % 25 == 0
            addresses = []
            backend_cfgs = []
            for m in chosen:
                cfg = nic_docs[m][0]["properties"]["ipConfigurations"][0]
                if ip_based:
                    addresses.append(
                        {
                            "name": f"a{m}",
                            "properties": {
                                "ipAddress": cfg["properties"]["privateIPAddress"],
                                "virtualNetwork": {"id": f"{net}/virtualNetworks/vnet{m // 250}"},
                            },
                        }
                    )
                else:
                    cfg["properties"]["loadBalancerBackendAddressPools"].append({"id": pool_id})
                    backend_cfgs.append({"id": cfg["id"]})
            pools.append(
                {
                    "id": pool_id,
                    "name": f"pool{f}",
                    "properties": {
                        "backendIPConfigurations": backend_cfgs,
                        "loadBalancerBackendAddresses": addresses,
                    },
                }
            )
            for r in range(rnd.randint(1, 2)):
                rule_id = f"{lb_id}/loadBalancingRules/fe{f}-r{r}"
                probe_id = f"{lb_id}/probes/fe{f}-r{r}"
                probes.append(
                    {
                        "id": probe_id,
                        "name": f"fe{f}-r{r}",
                        "properties": {"protocol": "Tcp", "port": 1972 + r},
                    }
                )
                rules.append(
                    {
                        "id": rule_id,
                        "name": f"fe{f}-r{r}",
                        "properties": {
                            "frontendIPConfiguration": {"id": fe_id},
                            "backendAddressPool": {"id": pool_id},
                            "probe": {"id": probe_id},
                            "protocol": "Tcp",
                            "frontendPort": 1972 + r,
                            "backendPort": 1972 + r,
                            "enableFloatingIP": rnd.random() < 0.1,
                        },
                    }
                )
                if rnd.random() < 0.5:
                    up = chosen[0]
                    health.append(
                        {
                            "ruleId": rule_id,
                            "response": {
                                "loadBalancerBackendAddresses": [
                                    {
                                        "ipAddress": nic_docs[m][0]["properties"][
                                            "ipConfigurations"
                                        ][0]["properties"]["privateIPAddress"],
                                        "networkInterfaceIPConfigurationId": nic_docs[m][0][
                                            "properties"
                                        ]["ipConfigurations"][0]["id"],
                                        "state": "Up" if m == up else "Down",
                                    }
                                    for m in chosen
                                ]
                            },
                        }
                    )
        if lb_index % 10 == 0:
            fe_id = f"{lb_id}/frontendIPConfigurations/public"
            fes.append(
                {
                    "id": fe_id,
                    "name": "public",
                    "properties": {
                        "publicIPAddress": {"id": f"{net}/publicIPAddresses/pip{lb_index}"}
                    },
                }
            )
            rules.append(
                {
                    "id": f"{lb_id}/loadBalancingRules/public",
                    "name": "public",
                    "properties": {
                        "frontendIPConfiguration": {"id": fe_id},
                        "backendAddressPool": {"id": pools[0]["id"]},
                        "protocol": "Tcp",
                        "frontendPort": 443,
                        "backendPort": 443,
                        "enableFloatingIP": False,
                    },
                }
            )
        resources.append(
            {
                "id": lb_id,
                "name": f"ilb{lb_index}",
                "type": "Microsoft.Network/loadBalancers",
                "location": "eastus",
                "sku": {"name": "Standard"},
                "properties": {
                    "frontendIPConfigurations": fes,
                    "backendAddressPools": pools,
                    "loadBalancingRules": rules,
                    "probes": probes,
                },
            }
        )
    for nics in nic_docs.values():
        resources.extend(nics)
    # data subnets
    for doc in resources:
        if doc["type"] == "Microsoft.Network/virtualNetworks":
            v = int(doc["name"][4:])
            doc["properties"]["addressSpace"]["addressPrefixes"].append(
                f"10.{128 + v // 256}.{v % 256}.0/24"
            )
            doc["properties"]["subnets"].append(
                {
                    "id": f"{doc['id']}/subnets/data",
                    "name": "data",
                    "properties": {"addressPrefix": f"10.{128 + v // 256}.{v % 256}.0/24"},
                }
            )
    skus = [
        {
            "resourceType": "virtualMachines",
            "name": name,
            "locations": ["eastus"],
            "capabilities": [
                {"name": "MaxNetworkInterfaces", "value": str(n)},
                {"name": "AcceleratedNetworkingEnabled", "value": "True"},
            ],
        }
        for name, n in SIZES
    ]
    return resources, skus, health


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=10_000)
    parser.add_argument("--lbs", type=int, default=1_000)
    parser.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="runs to time; the best is compared with the target (the machine is shared)",
    )
    parser.add_argument(
        "--no-tracemalloc",
        action="store_true",
        help="skip the extra traced run (peak Python allocations)",
    )
    args = parser.parse_args(argv)

    resources, skus, health = generate(args.vms, args.lbs)
    counts: dict[str, int] = {}
    for doc in resources:
        counts[doc["type"]] = counts.get(doc["type"], 0) + 1
    frontends = sum(
        len(d["properties"]["frontendIPConfigurations"])
        for d in resources
        if d["type"] == "Microsoft.Network/loadBalancers"
    )
    settings = Settings()
    gc.collect()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    runs = []
    for _ in range(max(1, args.repeat)):
        w0, c0 = time.perf_counter(), time.process_time()
        topology = build_topology(resources, skus, health)
        c1 = time.process_time()
        evaluation = evaluate(topology, settings)
        w2, c2 = time.perf_counter(), time.process_time()
        runs.append({"build": c1 - c0, "evaluate": c2 - c1, "wall": w2 - w0})
        findings_count = len(evaluation.findings)
        sev = evaluation.severity_counts()
        not_affected = dict(evaluation.not_affected_counts())
        # Free this run's results outside the timed section (else the next run pays for it).
        del topology, evaluation
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    best_eval = min(r["evaluate"] for r in runs)
    best_build = min(r["build"] for r in runs)
    best_total = min(r["build"] + r["evaluate"] for r in runs)
    median_eval = sorted(r["evaluate"] for r in runs)[len(runs) // 2]
    median_total = sorted(r["build"] + r["evaluate"] for r in runs)[len(runs) // 2]
    best_wall = min(r["wall"] for r in runs)

    peak_traced = None
    if not args.no_tracemalloc:
        gc.collect()
        tracemalloc.start()
        evaluate(build_topology(resources, skus, health), settings)
        peak_traced = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()

    print(
        f"estate: {counts.get('Microsoft.Compute/virtualMachines', 0)} VMs, "
        f"{counts.get('Microsoft.Network/networkInterfaces', 0)} NICs, "
        f"{counts.get('Microsoft.Network/loadBalancers', 0)} load balancers, "
        f"{frontends} frontends, "
        f"{len(health)} rule health entries"
    )
    print(
        f"build + evaluate: {best_total:.3f} s (best of {len(runs)} runs, CPU time; "
        f"median {median_total:.3f} s; best wall {best_wall:.3f} s)"
    )
    print(
        f"  topology build: {best_build:.3f} s; evaluate: {best_eval:.3f} s "
        f"(median {median_eval:.3f} s)"
    )
    print(
        f"memory: peak RSS {rss_after:.0f} MB (generated documents alone {rss_before:.0f} MB)"
        + (
            f"; peak traced allocations of one build+evaluate {peak_traced:.0f} MB"
            if peak_traced is not None
            else ""
        )
    )
    print(
        f"findings: {findings_count} (high {sev['high']}, medium {sev['medium']}, "
        f"info {sev['info']}); not affected: {not_affected}"
    )
    ok_time = best_total < 1.0
    ok_mem = rss_after < 500
    print(
        f"targets: build + evaluate time {'OK' if ok_time else 'MISSED'} (< 1 s CPU), "
        f"memory {'OK' if ok_mem else 'MISSED'} (< 500 MB peak RSS)"
    )
    return 0 if ok_time and ok_mem else 1


if __name__ == "__main__":
    raise SystemExit(main())
