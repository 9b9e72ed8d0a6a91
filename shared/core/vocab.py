"""Pure: the closed vocabularies of the product, one enum each.

They are `StrEnum`s: a member is its value (`Severity.HIGH == "high"`), so reports, journal
entries and API bodies keep the same text, and a value read back from storage or JSON compares
equal to its member.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "Mode", "Severity", "ACTIONABLE", "CallerEvidence", "PowerState", "TriggerKind",
    "UNATTENDED", "Status", "Verdict", "StepKind", "JournalAction", "JournalResult",
    "RecordKind", "DriftKind", "RemediationCall", "EventStatus", "EventSchema", "ScopeKind",
    "ApproverVerdict", "PreflightCheck", "HealthSource", "SweepState", "ItemOutcome",
]


class Mode(StrEnum):
    """What the product may do (HAIRPIN_MODE)."""

    AUDIT = "audit"  # never writes
    PLAN = "plan"  # records plans, writes nothing to Azure
    APPLY = "apply"  # may act, under the guard


class Severity(StrEnum):
    """How bad a finding is (docs/risk-model.md), worst first."""

    HIGH = "high"  # a caller is known and the hairpin fails now
    MEDIUM = "medium"  # a caller is known; it fails after a failover
    INFO = "info"  # no known caller: a latent exposure

    @property
    def actionable(self) -> bool:
        """Remediation covers it (and an audit exits 1)."""
        return self in ACTIONABLE


ACTIONABLE = frozenset({Severity.HIGH, Severity.MEDIUM})


class CallerEvidence(StrEnum):
    """Why a VM is expected to call a frontend it backs."""

    DECLARED = "declared"  # settings or the VM's tag say so
    INFERRED = "inferred"  # it backs two or more internal frontends (co-hosted services)
    NONE = "none"


class PowerState(StrEnum):
    """A VM's power state as ARM reports it (`PowerState/<code>`)."""

    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"  # stopped but still allocated: NICs cannot change
    DEALLOCATING = "deallocating"
    DEALLOCATED = "deallocated"
    UNKNOWN = "unknown"
    # Not an ARM power state: the VM does not exist (any more).
    DELETED = "deleted"

    @classmethod
    def from_code(cls, code: object) -> PowerState | None:
        """`PowerState/running` (or `running`) -> RUNNING; None for anything else."""
        if not isinstance(code, str):
            return None
        text = code.split("/", 1)[1] if code.lower().startswith("powerstate/") else code
        try:
            return cls(text.strip().lower())
        except ValueError:
            return None

    @property
    def is_down(self) -> bool:
        """Deallocated or stopped: running nothing."""
        return self in (PowerState.DEALLOCATED, PowerState.STOPPED)


class TriggerKind(StrEnum):
    """Which entry point caused a run."""

    CLI = "cli"
    HTTP = "http"
    TIMER = "timer"
    EVENT = "event"
    SWEEP = "sweep"

    @property
    def unattended(self) -> bool:
        """No person asked for this run: the guard wants opt-in tags and windows."""
        return self in UNATTENDED


UNATTENDED = frozenset({TriggerKind.EVENT, TriggerKind.TIMER, TriggerKind.SWEEP})


class Status(StrEnum):
    """How a remediation run ended (`Outcome.status`, `VmOutcome.status`)."""

    APPLIED = "applied"  # something changed (and was verified)
    UNCHANGED = "unchanged"  # nothing needed changing
    PENDING = "pending"  # waits: an approval, a window, a busy lock, the budget
    REFUSED = "refused"  # the guard or a safety check said no
    FAILED = "failed"  # a step failed; the journal says which

    @property
    def done(self) -> bool:
        return self in (Status.APPLIED, Status.UNCHANGED)


class Verdict(StrEnum):
    """The guard's decision on a plan."""

    RUN = "run"
    PENDING = "pending"
    REFUSED = "refused"


class StepKind(StrEnum):
    """The steps of a plan (and the journal actions of those steps)."""

    ENSURE_NIC = "ensure-nic"
    DEALLOCATE = "deallocate"
    ATTACH = "attach-nic"
    START = "start"
    ROUTES = "guest-routes"
    VERIFY = "verify"
    RECORD = "record"
    # rollback
    CLEANUP_ROUTES = "cleanup-routes"
    DETACH = "detach-nic"
    DELETE_NIC = "delete-nic"


class JournalAction(StrEnum):
    """Journal actions that are not plan steps."""

    PLAN = "plan"  # a plan recorded as pending or refused
    APPLY = "apply"  # a VM's run refused, stopped or failed
    GUEST = "guest"  # the guest could not run a command now
    ROLLBACK = "rollback"
    EVENT = "event"
    EVENT_REJECTED = "event-rejected"
    SWEEP = "sweep"
    FIX_OPERATION = "fix-operation"  # status of an apply queued by the fix API
    PREFLIGHT = "preflight"  # the checks before a VM's first deallocation


class PreflightCheck(StrEnum):
    """What the preflight proves before a VM is taken down (shared.core.remediation.preflight)."""

    BUDGET = "budget"  # the time left covers deallocate + attach + start + agent ready
    PERMISSIONS = "permissions"  # the identity may do every action the steps need
    SIZE = "size"  # the VM's size takes one more NIC
    NIC = "nic"  # the managed NIC is Succeeded, with its address, in the VM's VNet
    AGENT = "agent"  # the VM agent reports Ready
    PROBE = "probe"  # a read-only Run Command answers and finds the guest's prerequisites


class JournalResult(StrEnum):
    STARTED = "started"  # written before an action: a crash after it leaves evidence
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    PENDING = "pending"  # plan recorded, waiting for a window or an approval
    REFUSED = "refused"  # the guard said no


class RecordKind(StrEnum):
    """Kinds of open records: standing facts in the journal's state table."""

    DEALLOCATED = "deallocated"  # deallocated by us, not started again yet
    VERIFIED_ROUTE = "verified-route"  # key = frontend IP: route pushed and verified
    EVENT = "event"  # an event id seen (duplicates)
    EVENT_PASS = "event-eval"  # an evaluation pass of a VM (bursts)
    EVENT_SUBJECT = "event-subject"  # subject -> VMs as resolved at a time
    FINDING_NOTIFIED = "finding-notified"  # "finding opened" was published


class DriftKind(StrEnum):
    """What a sweep or an event found out of line with the fix (summary keys)."""

    NEW_FINDING = "new_finding"
    NEW_VIP = "route_missing_for_new_frontend"
    NIC_MISSING = "managed_nic_missing"  # detached or deleted
    NIC_DETACHED = "managed_nic_detached"
    NIC_IN_POOL = "managed_nic_in_pool"
    GUEST_ROUTES = "guest_routes_missing"
    GUEST_RESTARTED = "guest_restarted"  # started/restarted/redeployed: routes unverified
    STALE = "stale_routes"
    LEFT_DEALLOCATED = "left_deallocated"
    VM_GONE = "vm_gone"


class RemediationCall(StrEnum):
    """The one remediation call that reconciles a VM's drift."""

    APPLY = "apply"
    ENSURE_GUEST_ROUTES = "ensure_guest_routes"
    VERIFY = "verify"


class EventStatus(StrEnum):
    """What happened to one event."""

    REJECTED = "rejected"  # malformed: acknowledged, never retried
    IGNORED = "ignored"  # not ours to handle
    DUPLICATE = "duplicate"
    IN_PROGRESS = "in-progress"  # another instance is handling it
    COALESCED = "coalesced"  # a pass that read state after the change covers it
    EVALUATED = "evaluated"
    GONE = "gone"  # its subject no longer exists
    FAILED = "failed"  # permanently: journalled and acknowledged


class EventSchema(StrEnum):
    """How Event Grid delivered an event (the subscription's eventDeliverySchema)."""

    EVENT_GRID = "eventgrid"  # EventGridSchema: eventType, eventTime, topic
    CLOUD_EVENTS = "cloudevents"  # CloudEventSchemaV1_0: type, time, source, specversion


class ScopeKind(StrEnum):
    """The resource whose current state an event makes the product re-read."""

    VM = "vm"
    NIC = "nic"
    LB = "lb"  # also for a write or delete of a load balancer's child resource
    VNET = "vnet"  # a subnet write


class LogRowKind(StrEnum):
    """What one Log Analytics row (table Hairpin_CL) records."""

    FINDING = "finding"  # a finding of an audit
    OUTCOME = "outcome"  # one VM's result in a remediation run
    DRIFT = "drift"  # one drift item a sweep or an event repaired (or tried to)


class ApproverVerdict(StrEnum):
    """May this caller approve a plan (POST /api/fix with "approve")?"""

    VERIFIED = "verified"  # App Service Authentication vouches for a holder of the role
    KEY_ONLY = "key-only"  # the lab setting lets the function key alone approve
    AUTH_NOT_ENABLED = "auth-not-enabled"  # the platform vouches for no one on this app
    NOT_SIGNED_IN = "not-signed-in"  # no token came with the request
    UNREADABLE = "unreadable"  # the platform's principal header could not be read
    MISSING_ROLE = "missing-role"  # verified, but without the approver app role

    @property
    def accepted(self) -> bool:
        return self in (ApproverVerdict.VERIFIED, ApproverVerdict.KEY_ONLY)


class HealthSource(StrEnum):
    """Where a rule's backend health was read (evidence, report)."""

    MONITOR = "monitor"  # Azure Monitor metric DipAvailability, many load balancers per call
    RULE_API = "rule_api"  # the per-rule health action of ARM (one long-running call per rule)


class SweepState(StrEnum):
    """Where a fleet sweep is (its entity in the sweep table)."""

    PLANNING = "planning"  # items being put on the queue (the next timer finishes that)
    QUEUED = "queued"  # every item is on the queue; results coming in
    FINISHING = "finishing"  # all results in; one invocation writes the report and notifies
    DONE = "done"  # summary stored, report written, notification sent


class ItemOutcome(StrEnum):
    """What one delivery of a work item did."""

    RECORDED = "recorded"  # processed, and its result recorded now
    DUPLICATE = "duplicate"  # its result was already recorded: nothing done again
    BUSY = "busy"  # another invocation holds the item: put back on the queue for later
    CONTINUED = "continued"  # budget spent, checkpoint saved, a continuation queued
    POISONED = "poisoned"  # failed on every delivery: recorded as an error
