"""Fairness of the final model beyond per-client accuracy: counterfactual tests (docs/trust.md, section 5)."""
