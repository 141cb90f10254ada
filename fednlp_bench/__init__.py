"""fednlp-bench: how much does federated training lose against centralized training on non-IID text?"""

__version__ = "0.1.0"
