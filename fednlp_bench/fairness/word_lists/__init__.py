"""Package data: the declared counterfactual word lists (read by fednlp_bench/fairness/wordlists.py)."""
