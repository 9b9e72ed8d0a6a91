"""The floor of an offline audit: what any program answering "which VM backs which internal
frontend" must do with a snapshot file, and nothing else.

Parse the JSON (orjson, the parser the audit uses; the cyclic collector off, as the audit has it
while it works, since no collection could free anything here), index the pools
(NIC-based: ipConfiguration -> pools; IP-based: the pool's addresses), join every
load-balancing rule of an internal frontend to the VMs behind it, and print the number of
(VM, frontend) pairs.
`bench_audit_offline.py` runs it beside `hairpin audit --snapshot` and divides.

    .venv/bin/python bench/floor_audit.py SNAPSHOT.json
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import orjson


def pairs(doc: dict) -> set[tuple[str, str]]:
    config_vm: dict[str, str] = {}  # ipConfiguration id -> VM id
    ip_vm: dict[str, str] = {}  # private IP -> VM id (IP-based pools)
    pool_configs: dict[str, list[str]] = {}  # pool id -> ipConfiguration ids
    lbs = []
    for res in doc["resources"]:
        kind = res["type"].lower()
        if kind == "microsoft.network/networkinterfaces":
            vm = (res["properties"].get("virtualMachine") or {}).get("id")
            for cfg in res["properties"].get("ipConfigurations", ()):
                if vm:
                    config_vm[cfg["id"].lower()] = vm
                    ip_vm[cfg["properties"].get("privateIPAddress")] = vm
                for pool in cfg["properties"].get("loadBalancerBackendAddressPools", ()):
                    pool_configs.setdefault(pool["id"].lower(), []).append(cfg["id"].lower())
        elif kind == "microsoft.network/loadbalancers":
            lbs.append(res)
    found: set[tuple[str, str]] = set()
    for lb in lbs:
        props = lb["properties"]
        internal = {fe["id"].lower() for fe in props.get("frontendIPConfigurations", ())
                    if fe["properties"].get("privateIPAddress")}
        by_ip = {p["id"].lower(): [a["properties"].get("ipAddress")
                                   for a in p["properties"].get("loadBalancerBackendAddresses", ())]
                 for p in props.get("backendAddressPools", ())}
        for rule in props.get("loadBalancingRules", ()):
            fe = rule["properties"]["frontendIPConfiguration"]["id"].lower()
            pool = rule["properties"]["backendAddressPool"]["id"].lower()
            if fe not in internal:
                continue
            vms = [config_vm.get(c) for c in pool_configs.get(pool, ())]
            vms += [ip_vm.get(ip) for ip in by_ip.get(pool, ())]
            found.update((vm, fe) for vm in vms if vm)
    return found


def main(path: str) -> int:
    gc.disable()
    print(len(pairs(orjson.loads(Path(path).read_bytes()))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
