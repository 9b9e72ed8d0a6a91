"""`python -m emulator` serves a scenario file and writes the client env; Resource Graph route."""

import json
import os
import subprocess
import sys
import time

from azure.identity import DefaultAzureCredential
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.resourcegraph.models import QueryRequest

from tests.support.fixtures_emulator import RG, small_scenario
from tests.support.paths import ROOT


def test_cli_serves_scenario_and_writes_env_file(tmp_path, monkeypatch):
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps(small_scenario()))
    env_file = tmp_path / "emu.env"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulator",
            "--scenario",
            str(scenario),
            "--env-file",
            str(env_file),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not env_file.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "emulator did not start"
            time.sleep(0.1)
        env = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        assert set(env) == {
            "IDENTITY_ENDPOINT",
            "IDENTITY_HEADER",
            "REQUESTS_CA_BUNDLE",
            "HAIRPIN_ARM_ENDPOINT",
            "HAIRPIN_METRICS_ENDPOINT",
            "AZURE_SUBSCRIPTION_ID",
        }
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        monkeypatch.delenv("AZURE_CLIENT_ID", raising=False)
        # what a user's process does: DefaultAzureCredential + REQUESTS_CA_BUNDLE from the env
        compute = ComputeManagementClient(
            DefaultAzureCredential(),
            env["AZURE_SUBSCRIPTION_ID"],
            base_url=env["HAIRPIN_ARM_ENDPOINT"],
        )
        assert sorted(v.name for v in compute.virtual_machines.list(RG)) == ["vm1", "vm2"]
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0
    assert os.environ.get("IDENTITY_HEADER") == env["IDENTITY_HEADER"]


def test_resource_graph_route_runs_the_query_over_the_store(emulator, arm_clients):
    emu = emulator()
    c = arm_clients(emu)
    c.compute.virtual_machines.begin_deallocate(RG, "vm2").result()
    res = c.graph.resources(
        QueryRequest(
            subscriptions=[emu.subscription_id],
            query="Resources | where type =~ 'microsoft.compute/virtualmachines' "
            "| project name, state = tostring(properties.extended.instanceView.powerState.code)"
            " | order by name asc",
        )
    )
    rows = res.data if isinstance(res.data, list) else res.data["rows"]
    assert [(r["name"], r["state"]) for r in rows] == [
        ("vm1", "PowerState/running"),
        ("vm2", "PowerState/deallocated"),
    ]
    entry = [e for e in emu.requests if e.resource_type == "Microsoft.ResourceGraph/resources"][0]
    assert entry.action == "Microsoft.ResourceGraph/resources/read"
    assert entry.principal == emu.tokens.identities[0].principal_id
    assert not entry.is_write
