"""Who takes part in a round: seeded draws (seeds.py), the sampling policy registry (policies.py) and which
aggregation weights a policy allows (weights.py).

Pure numpy and the registries, below the config: ``config.py`` validates
``sampling``, ``sampling_params`` and ``aggregation_weights`` with these
declarations, and the engine's round loop draws with them.
"""
