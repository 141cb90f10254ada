"""Execution backends beyond the in-process simulator (``fednlp_bench.engine.server.simulator``).

``fedml_backend`` launches a run on FedML (one server process + K client
processes over MPI). It imports nothing from FedML itself, so the core
install stays free of FedML's pins; ``fedml_adapter`` is the part that runs
inside the FedML virtualenv (see ``scripts/setup_fedml_env.sh``).
"""
