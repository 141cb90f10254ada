"""Running a benchmark: suites, hyperparameter grids, the two-stage protocol, selection, plans, re-runs.

Everything here executes experiments (through ``fednlp_bench.engine``) and writes records and
``plan.json``; ``fednlp_bench.leaderboard`` only reads what this package wrote.
"""
