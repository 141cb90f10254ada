"""Which clients take part in a round, and which of them fail.

Every draw uses a generator seeded by ``(seed, round, stream)`` rather than one
generator advanced through the run: a resumed run, or a run with a different
number of rounds, sees exactly the same clients in round ``r``.
"""

from __future__ import annotations

import numpy as np

_SAMPLE_STREAM = 0
_DROPOUT_STREAM = 1
_CLIENT_STREAM = 2
_CENTRAL_STREAM = 3


def round_rng(seed: int, rnd: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(rnd), int(stream)]))


def client_seed(seed: int, rnd: int, client_id: int) -> int:
    """Seed of one client's local training in one round (shuffling, dropout layers)."""
    seq = np.random.SeedSequence([int(seed), int(rnd), _CLIENT_STREAM, int(client_id)])
    # int() before %: NumPy 1.x turns ``uint64 % int`` into float64 and rounds the seed (NumPy 2 keeps it exact).
    return int(seq.generate_state(1, dtype=np.uint64)[0]) % (2**63 - 1)


def central_seed(seed: int, rnd: int) -> int:
    seq = np.random.SeedSequence([int(seed), int(rnd), _CENTRAL_STREAM])
    return int(seq.generate_state(1, dtype=np.uint64)[0]) % (2**63 - 1)


def sample_clients(
    num_clients: int, k: int, rnd: int, seed: int, method: str = "uniform", sizes: np.ndarray | None = None
) -> list[int]:
    """K distinct client ids, sorted; ``weighted`` draws with probability proportional to client size.

    Size-weighted ("activity-based") selection favours clients with more data,
    which the seed research found to beat uniform selection on non-IID text.
    """
    if not 1 <= k <= num_clients:
        raise ValueError(f"clients_per_round={k} must be between 1 and the number of clients ({num_clients})")
    rng = round_rng(seed, rnd, _SAMPLE_STREAM)
    if k == num_clients:
        return list(range(num_clients))
    if method == "uniform":
        chosen = rng.choice(num_clients, size=k, replace=False)
    elif method == "weighted":
        if sizes is None or len(sizes) != num_clients:
            raise ValueError("weighted sampling needs one size per client")
        p = np.asarray(sizes, dtype=np.float64)
        if (p < 0).any() or p.sum() <= 0:
            raise ValueError(f"client sizes must be non-negative and not all zero, got {p.tolist()[:10]}...")
        if int((p > 0).sum()) < k:
            raise ValueError(f"weighted sampling needs at least {k} non-empty clients, found {int((p > 0).sum())}")
        chosen = rng.choice(num_clients, size=k, replace=False, p=p / p.sum())
    else:
        raise ValueError(f"unknown sampling method {method!r}; choose 'uniform' or 'weighted'")
    return sorted(int(c) for c in chosen)


def apply_dropout(clients: list[int], rate: float, rnd: int, seed: int) -> tuple[list[int], list[int]]:
    """Split sampled clients into (survivors, dropped); each fails independently with ``rate``."""
    if rate <= 0:
        return list(clients), []
    rng = round_rng(seed, rnd, _DROPOUT_STREAM)
    fails = rng.random(len(clients)) < rate
    kept = [c for c, f in zip(clients, fails) if not f]
    dropped = [c for c, f in zip(clients, fails) if f]
    return kept, dropped
