"""The secret randomness of a DP run: one seed from OS entropy, kept only in the private checkpoint.

DP holds only while the noise (and, for amplification by subsampling, who was
sampled) is unknown to whoever reads the output. A generator seeded from the
run's public seed would let anyone holding the record regenerate the noise
and subtract it. So a DP run draws one 63-bit seed from ``secrets`` when it
starts, derives every private draw from ``(seed, stream, round, ...)`` and
stores the seed in the checkpoint (``dp/noise_seed``), never in the record:
``--resume`` restores it and continues bit-identically, a fresh run of the
same config draws new noise.
"""

from __future__ import annotations

import secrets

import numpy as np
import torch

#: Streams of the private draws (distinct from engine.sampling's public streams, which use the run seed).
NOISE_STREAM = 4  # Gaussian noise of client-level DP
SAMPLE_STREAM = 5  # Poisson client selection of client-level DP
DPSGD_STREAM = 6  # Poisson batches and noise of example-level DP-SGD
STATE_KEY = "dp/noise_seed"


class PrivateSeed:
    """A run's secret seed (mutable: a resumed run replaces the fresh draw by the checkpoint's)."""

    def __init__(self, value: int | None = None) -> None:
        self.value = secrets.randbits(63) if value is None else int(value)

    def derive(self, *stream: int) -> int:
        """A 63-bit seed for one private draw, e.g. ``derive(NOISE_STREAM, round)``."""
        seq = np.random.SeedSequence([self.value, *(int(s) for s in stream)])
        return int(seq.generate_state(1, dtype=np.uint64)[0]) % (2**63 - 1)

    def torch_generator(self, *stream: int) -> torch.Generator:
        gen = torch.Generator(device="cpu")
        gen.manual_seed(self.derive(*stream))
        return gen

    def numpy_generator(self, *stream: int) -> np.random.Generator:
        return np.random.default_rng(self.derive(*stream))

    def __repr__(self) -> str:  # never print the secret (logs, tracebacks)
        return "PrivateSeed(<secret>)"


def as_private_seed(seed: "PrivateSeed | int") -> PrivateSeed:
    """Tests and benchmarks pass a fixed int; runs pass the run's drawn seed."""
    return seed if isinstance(seed, PrivateSeed) else PrivateSeed(seed)
