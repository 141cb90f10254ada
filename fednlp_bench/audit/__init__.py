"""Leakage audits of a trained global model (practical privacy, next to DP's theoretical epsilon).

membership.py: example-level attacks (loss threshold, reference-calibrated);
statistics.py: AUC with bootstrap interval, TPR at low FPR; tracking.py: the
rows really trained on; canary.py: canary exposure; spec.py: the config sections.
"""

from fednlp_bench.audit.membership import loss_threshold_attack, per_example_losses

__all__ = ["loss_threshold_attack", "per_example_losses"]
