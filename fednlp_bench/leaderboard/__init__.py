"""Leaderboards: result records -> validated, traceable Markdown/CSV tables, curves and a README.

``collect`` finds and validates records (refusing bad ones and duplicates),
``tables`` groups them into tables (pure data), ``plots`` draws metric-vs-round
curves, ``render`` writes every file, ``verify`` re-runs one record from its
config, and ``suite`` runs the grid of experiments that feeds the tables. Two-stage (tier) suites:
``tiers`` (registry), ``protocol`` (tier/tuning/final keys), ``grid`` (grids), ``tier_plan``
(tuning units and final cells), ``selection`` (choice + plan.json) and ``stages`` (running them).
Tier leaderboards (``--plan``): ``plan`` reads the suite's plan.json,
``tier_cells`` traces its cells to records and computes them (statistics in
``tier_stats``), ``tier_render`` / ``tier_plots`` write the text and the gap
figure, ``tier_tables`` orchestrates, ``tier_verify`` re-runs one record per task.
See docs/leaderboard.md.
"""
