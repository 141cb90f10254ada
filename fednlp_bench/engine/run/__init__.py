"""One run from a validated config to its record: resolve the run folder, prepare, run the rounds, finish."""
