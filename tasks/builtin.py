"""Importing this module registers the four built-in tasks (the registry imports it lazily)."""

from fednlp_bench.tasks import classification, generation, qa, tagging  # noqa: F401

__all__ = ["classification", "generation", "qa", "tagging"]
