"""The emulator: HTTPS (throwaway CA), bearer auth, RBAC, faults, routing and LROs.

with Emulator(scenario) as emu:
    NetworkManagementClient(cred, emu.subscription_id, base_url=emu.base_url,
                            connection_verify=emu.ca_path)
"""

from __future__ import annotations

import os
import ssl
import tempfile
import threading
import uuid
from http.server import ThreadingHTTPServer

from emulator.dispatch import ArmDispatcher
from emulator.faults import Faults
from emulator.guests import GuestModel, RecordingGuest
from emulator.http import EmulatorHttpServer, handler_for
from emulator.identity import Identity, TokenService
from emulator.latency import LatencyProfile, ProfileStage, profile_named
from emulator.loading import load_scenario, populate, subscription_of
from emulator.logs_ingestion import LogsIngestion, logs_handler
from emulator.lro import Operations
from emulator.metrics import Metrics
from emulator.mirrors import Mirrors
from emulator.pipeline import RequestPipeline
from emulator.reqlog import RequestLog
from emulator.resources import network, power, types, vms
from emulator.state import Store, lower
from emulator.throttle import Throttle


def _arm_throttle(throttle: bool | dict, profile: LatencyProfile | None) -> Throttle | None:
    """ARM's subscription buckets: True = Azure's limits, {"reads": (burst, per_s), ...}, or
    the profile's; none otherwise."""
    if not throttle and profile is not None and profile.arm_limits:
        throttle = profile.arm_limits
    if not throttle:
        return None
    return Throttle(throttle if isinstance(throttle, dict) else None)


class Emulator:
    """ARM emulator over one scenario document. See emulator/README.md."""

    def __init__(
        self,
        scenario=None,
        guest: GuestModel | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        page_size: int = 100,
        lro_polls: int = 1,
        lro_retry_after: int | None = None,
        roles: dict | None = None,
        identities: list[Identity] | None = None,
        subscription_id: str | None = None,
        run_command_seconds: float = 0.0,
        agent_ready_seconds: float = 0.0,
        throttle: bool | dict = False,
        profile: str | LatencyProfile | None = None,
    ):
        self.scenario = load_scenario(scenario)
        emu_cfg = self.scenario.get("emulator") or {}
        self.guest = guest if guest is not None else RecordingGuest(emu_cfg.get("guest"))
        self.host, self._port, self.page_size = host, port, page_size
        self.run_command_seconds = run_command_seconds  # how long each Run Command takes
        self.agent_ready_seconds = agent_ready_seconds  # Not Ready this long after a start
        self.agent_ready_at: dict[str, float] = {}  # lower VM id -> monotonic time it is Ready
        self.profile = profile_named(profile)  # emulator.latency: field latency, LRO timings
        self.profile_stage = ProfileStage(self, self.profile) if self.profile else None
        self.throttle = _arm_throttle(throttle, self.profile)
        self.lro_polls, self.lro_retry_after = lro_polls, lro_retry_after
        # {principal or client id or name or "*": {"Microsoft.Network/*/read", ...}} grants at
        # every scope; a mapping {scope: actions} grants each set at that scope and below it,
        # as role assignments do, e.g. {"/subscriptions/s/resourceGroups/rg": {...},
        # "/subscriptions/s": {"*/read"}} (see emulator.rbac.granted_at).
        self.roles = roles
        self.tokens = TokenService(identities if identities is not None else [
            Identity(i["principalId"], i["clientId"], i.get("name", "identity"))
            for i in emu_cfg.get("identities") or []] or None)
        self.store, self.faults, self.requests = Store(), Faults(), RequestLog()
        self.events: list[dict] = []  # Event Grid system-topic events of the writes served
        self.logs, self.metrics = LogsIngestion(self), Metrics(self)  # DCE; Azure Monitor
        self.on_event = None  # optional callable(event), called as each event is made
        self.lock = threading.RLock()  # one request mutates the model at a time
        self.busy_lock = threading.Lock()
        self.run_busy: set[str] = set()  # VMs with a Run Command in progress
        self.power: dict[str, str] = {}  # lower VM id -> running | deallocated | stopped
        self.instance_extra: dict[str, dict] = {}
        self.skus: list[dict] = list(self.scenario.get("skus") or [])
        self.health: dict[str, dict] = {}
        # Resource Graph's 16 MiB page limit; tests lower it to reach it with a small estate.
        self.graph_response_limit_bytes = 16 * 1024 * 1024
        self.mirrors = Mirrors(self.store, self.power_state)
        self.subscription_id = subscription_id or emu_cfg.get("subscriptionId") or subscription_of(
            self.scenario)
        self.dispatcher = ArmDispatcher(self)
        self.pipeline = RequestPipeline(self)
        self.net_index: tuple[int, dict] | None = None
        self._servers: list[ThreadingHTTPServer] = []
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.ca_path = self.base_url = self.identity_endpoint = self.logs_endpoint = None
        populate(self, self.scenario, self.subscription_id)

    def _boot(self) -> None:
        """Running VMs boot their guests (at start(), so a guest can attach to us first)."""
        with self.lock:
            for vm in self.store.of_type(types.VM):
                if self.power_state(vm["id"]) == "running":
                    self.power[lower(vm["id"])] = "stopped"
                    power.start(self, vm["id"])
                    # The scenario's running VMs have been up a while: their agents are in.
                    if self.agent_ready_at.pop(lower(vm["id"]), None) is not None:
                        vms.set_agent_ready(self, vm["id"], True)

    # ------------------------------------------------------------------ model helpers
    def new_guid(self) -> str:
        return str(uuid.uuid4())

    def power_state(self, vm_id: str) -> str:
        return self.power.get(lower(vm_id), "running")

    def set_power(self, vm_id: str, state: str) -> None:
        """Test helper: change a VM's power state as if an operator did (guest hooks run)."""
        with self.lock:
            if state == "running":
                power.start(self, vm_id)
            else:
                power.stop(self, vm_id, state)

    def set_agent_ready(self, vm_id: str, ready: bool) -> None:
        """Test helper: mark the VM agent Ready / Not Ready (Run Command then fails)."""
        with self.lock:
            vms.set_agent_ready(self, vm_id, ready)

    def fail_over(self, vm_id: str) -> None:
        """Demo/test helper: a planned mirror failover (as a DBA does it) that makes this VM's
        members the primaries; the guest model is told so its ILB follows."""
        with self.lock:
            self.mirrors.fail_over_to(vm_id)
            changed = getattr(self.guest, "on_health_changed", None)
            if changed:
                changed()

    def arg_resources(self) -> list[dict]:
        """What Resource Graph sees: every document as GET returns it, VMs with their current
        instanceView (emulator.graph.resource_graph turns these into ARG rows)."""
        return [self.view(doc, expand=True) for doc in self.store.all()]

    def view(self, doc: dict, expand: bool = False) -> dict:
        """A stored document as GET returns it (VMs with their instance view when expanded)."""
        t = doc.get("type", "").lower()
        if t == types.VM.lower():
            return vms.view(self, doc, expand)
        return network.view(self, doc)

    def token_for(
        self, identity: Identity | None = None, audience: str = "https://management.azure.com"
    ) -> str:
        """A valid bearer token (for raw HTTP tests)."""
        return self.tokens.issue(identity or self.tokens.identities[0], audience)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Emulator:
        import trustme  # dev dependency; only needed when serving

        self._tmp = tempfile.TemporaryDirectory(prefix="arm-emulator-")
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_path = os.path.join(self._tmp.name, "ca.pem")
        ca.cert_pem.write_to_path(self.ca_path)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        arm = EmulatorHttpServer((self.host, self._port), handler_for(self, arm=True))
        arm.tls = ctx
        ident = EmulatorHttpServer((self.host, 0), handler_for(self, arm=False))
        dce = EmulatorHttpServer((self.host, 0), logs_handler(self.logs))
        dce.tls = ctx  # a DCE is its own HTTPS host ({dce}.{region}.ingest.monitor.azure.com)
        self._servers = [arm, ident, dce]
        self.base_url = f"https://{self.host}:{arm.server_address[1]}"
        self.logs_endpoint = f"https://{self.host}:{dce.server_address[1]}"
        self.identity_endpoint = f"http://{self.host}:{ident.server_address[1]}/msi/token"
        self.ops = Operations(self.base_url, self.lro_polls, self.lro_retry_after)
        self._boot()
        for srv in self._servers:
            threading.Thread(
                target=srv.serve_forever,
                kwargs={"poll_interval": 0.1},
                daemon=True,
                name="arm-emulator",
            ).start()
        return self

    def stop(self) -> None:
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()
        self._servers = []
        if self._tmp:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._servers[0].server_address[1]

    @property
    def metrics_endpoint(self) -> str:
        """Azure Monitor's regional endpoint template: `{region}` is a path segment here."""
        return f"{self.base_url}/regions/{{region}}"

    @property
    def identity_header(self) -> str:
        return self.tokens.header_secret

    def env(self) -> dict:
        return {
            "IDENTITY_ENDPOINT": self.identity_endpoint,
            "IDENTITY_HEADER": self.identity_header,
            "REQUESTS_CA_BUNDLE": self.ca_path,
            "HAIRPIN_ARM_ENDPOINT": self.base_url,
            "HAIRPIN_METRICS_ENDPOINT": self.metrics_endpoint,
            "AZURE_SUBSCRIPTION_ID": self.subscription_id,
        }
