"""Pure: which VMs will fail to reach which internal load balancer frontends, and why.

`evaluate` (the evaluation, with its severity rule `severity_of`), the result types (`model`),
per-rule likelihood (`likelihood`), declared callers (`callers`), remediation feasibility
(`feasibility`) and a finding's sentences (`text`)."""

from shared.core.risk.evaluate import evaluate, severity_of
from shared.core.risk.feasibility import SUPPORTED_OS, UNKNOWN, secondary_nic_name
from shared.core.risk.model import (
    NOT_AFFECTED_REASONS,
    SEVERITIES,
    Evaluation,
    Finding,
    Issue,
    NotAffected,
    Port,
    Remediation,
    finding_id,
)
from shared.core.risk.text import likelihood_sentence, reason_sentence

__all__ = [
    "NOT_AFFECTED_REASONS", "SEVERITIES", "SUPPORTED_OS", "UNKNOWN", "Evaluation", "Finding",
    "Issue", "NotAffected", "Port", "Remediation", "evaluate", "finding_id",
    "likelihood_sentence", "reason_sentence", "secondary_nic_name", "severity_of",
]
