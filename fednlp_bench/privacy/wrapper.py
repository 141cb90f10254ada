"""A strategy wrapper that carries a DP run's secret seed through checkpoints, transparent to everything else.

The round loop checkpoints ``strategy.state_dict()`` and restores it on
``--resume``; a DP run's secret noise seed rides there (the checkpoint is
private, the record is not), so a resumed run continues with the same noise
and a record never holds it. Everything the runner asks of a strategy that
the wrapper does not define (``name``, ``centralized``, ``configure_round``,
``make_client``, ...) is forwarded to the inner strategy. Example-level DP-SGD
uses this class as is (its server aggregates plainly); client-level DP
subclasses it (``aggregation.PrivateAggregation``).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from fednlp_bench.algorithms.base import ClientResult, Strategy, Weights
from fednlp_bench.privacy.secret import STATE_KEY, PrivateSeed, as_private_seed

_STATE_PREFIX = "inner/"


class PrivateStrategy:
    """``inner`` + the run's :class:`PrivateSeed`; aggregates exactly as ``inner`` does."""

    def __init__(self, inner: Strategy, noise_seed: PrivateSeed | int) -> None:
        self.inner = inner
        self.noise_seed = as_private_seed(noise_seed)
        #: What the last aggregate released (clip norm, noise std, ...) under "released" keys, and what it did not
        #: (exact counts) under "nonprivate": the round row keeps the first, the non-private side file the second.
        self.last_round: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes not found on the wrapper; guard against recursion before __init__ ran.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def aggregate(self, rnd: int, global_weights: Weights, results: Sequence[ClientResult]) -> Weights:
        return self.inner.aggregate(rnd, global_weights, results)

    # ------------------------------------------------------------ state
    def dp_state(self) -> dict[str, Any]:
        """DP state besides the seed (subclasses: e.g. the adaptive clip norm)."""
        return {}

    def load_dp_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`dp_state` returned."""

    def state_dict(self) -> dict[str, Any]:
        state = {f"{_STATE_PREFIX}{k}": v for k, v in self.inner.state_dict().items()}
        state[STATE_KEY] = self.noise_seed.value
        state.update(self.dp_state())
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if STATE_KEY not in state:
            raise ValueError(
                f"the checkpoint has no secret DP noise seed ({STATE_KEY}): it was not made by a DP run of this "
                f"version, so it cannot be resumed with the same noise; start the run again"
            )
        self.noise_seed.value = int(state[STATE_KEY])
        self.load_dp_state(state)
        inner = {k[len(_STATE_PREFIX):]: v for k, v in state.items() if k.startswith(_STATE_PREFIX)}
        self.inner.load_state_dict(inner)
