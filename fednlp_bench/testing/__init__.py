"""Fixtures for tests, benchmarks and docs: a synthetic toy task/partition and an entity-QA builder.

They live outside ``engine`` and ``tasks`` so that nothing the benchmark
reports can come from them by accident; import them explicitly.
"""
