"""Remediation: the one code path every entry point (CLI, HTTP, queue, events, sweep) uses.

    plan_for_vm / plan_for_finding / plan_for_target -> PlanResult
    apply(ctx, target, trigger, approval=)           -> Outcome
    resume_interrupted(ctx, trigger)                  -> [Outcome]
    ensure_guest_routes / verify / rollback           -> Outcome

Parts: `targets` (targets, live observation, PlanResult), `run` (one run: journal, actions,
budget, writes), `steps` (how a VM's steps are written down), `vm_runner` (one VM's steps),
`guest_steps` (routes and verification), `resume` (VMs left deallocated), `rollback`, `api`
(apply, ensure_guest_routes, verify, history, run_plan).
"""

from shared.core.remediation.outcome import Outcome, VmOutcome, new_operation_id
from shared.services.remediation.api import apply, ensure_guest_routes, history, run_plan, verify
from shared.services.remediation.resume import resume_interrupted
from shared.services.remediation.rollback import rollback, rollback_plan
from shared.services.remediation.targets import (
    FINDING_ID,
    PlanResult,
    TargetError,
    parse_target,
    plan_for_finding,
    plan_for_target,
    plan_for_vm,
)

__all__ = [
    "Outcome", "VmOutcome",
    "new_operation_id", "apply", "ensure_guest_routes", "history", "resume_interrupted",
    "rollback", "run_plan", "verify", "rollback_plan", "FINDING_ID", "PlanResult", "TargetError",
    "parse_target", "plan_for_finding", "plan_for_target", "plan_for_vm",
]
