"""Execution backends beyond the in-process simulator (``fednlp_bench.engine.server.simulator``).

``launch.py`` starts a run on the backend its config names (the registry of
backends is ``fednlp_bench/execution.py``). ``fedml/`` runs one on FedML: the
launcher side (launcher.py, processes.py, environment.py, hosts.py) imports
nothing from FedML itself, so the core install stays free of FedML's pins;
the ranks (rank.py: server.py, client.py, over messages.py and runtime.py)
run inside the FedML virtualenv (``scripts/setup_fedml_env.sh``).
"""
