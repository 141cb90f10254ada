"""Scoring: validation each round, the test split once at the end, per-client metrics, audits, fairness."""
