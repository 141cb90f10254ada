"""Leaderboards: plan.json + result records -> traceable tier tables, a gap figure and a README.

This package reads records and plans only; it imports nothing from
``fednlp_bench.engine`` or ``fednlp_bench.suite`` (tests/test_leaderboard_imports.py),
so a table can be rebuilt and checked without training anything. Running
experiments lives in ``fednlp_bench.suite``.

- ``records``: find, validate and de-duplicate records; ``labels``: algorithm and partition labels, budgets;
- ``plan``: read the suite's plan.json; ``tiers``: the tier registry;
- ``summary``: the one statistics type (mean, std, t interval, paired and Welch differences);
- ``convergence``: the per-tier convergence criterion and each cell's status;
- ``client_tail``: the worst-10%-client metric over qualifying clients, with its bootstrap interval;
- ``tier_build`` / ``tier_cells``: cells traced to records and their numbers;
- ``tier_render`` / ``tier_readme`` / ``tier_plots``: Markdown + CSV, the README headline, the gap figure;
- ``tier_tables``: orchestration; ``markdown`` / ``verification``: shared text helpers;
- ``trust_tables``: the privacy and population comparison tables.

See docs/leaderboard.md.
"""
