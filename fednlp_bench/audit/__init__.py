"""Leakage audits of a trained global model (practical privacy, next to DP's theoretical epsilon)."""

from fednlp_bench.audit.membership import loss_threshold_attack, per_example_losses, run_membership_audit

__all__ = ["loss_threshold_attack", "per_example_losses", "run_membership_audit"]
