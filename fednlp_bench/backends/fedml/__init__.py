"""``--backend fedml``: the launcher (core environment) and the ranks (FedML's virtualenv), split by role."""
