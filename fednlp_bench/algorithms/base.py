"""The server side of federated learning: the ``Strategy`` contract.

Modelled on Flower's ``Strategy`` (configure a round, aggregate results, keep
server state) so an algorithm from a paper maps onto one small class:

* :meth:`Strategy.configure_round` says what each selected client is told
  (e.g. FedProx's ``mu``); :attr:`Strategy.client` is the client procedure
  (``algorithms/client.py``) that reads it during local training;
* :meth:`Strategy.aggregate` turns the clients' weight deltas into the next
  global weights;
* :meth:`Strategy.state_dict` / :meth:`Strategy.load_state_dict` expose the
  server state (e.g. FedAdam's moments) so checkpoints resume exactly.

Client sampling, local training, bytes and checkpoint files are the engine's
job; a strategy never sees a model object, only named tensors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

import torch

from fednlp_bench.algorithms.client import ClientProcedure
from fednlp_bench.registry import Param, declare, resolve_params

#: Named float tensors: the global model or a client delta.
Weights = dict[str, torch.Tensor]
#: What a strategy's state may hold: tensors (saved as safetensors) or JSON values.
StateValue = Any



@dataclass
class ClientResult:
    """What one client sends back after local training."""

    client_id: int
    #: local weights minus the global weights the client started from.
    delta: Weights
    #: number of training examples (features) the client holds; FedAvg's weight.
    num_examples: int
    #: optimizer steps the client took (FedNova-style normalisation needs it).
    num_steps: int
    #: mean training loss over the client's local steps.
    loss: float
    metrics: dict[str, float] = field(default_factory=dict)
    #: extra upload of the algorithm's client procedure (e.g. SCAFFOLD's control-variate change).
    payload: dict[str, Any] = field(default_factory=dict)


class Strategy(ABC):
    """Base class of every FL algorithm (and of the centralized baseline).

    Subclasses set :attr:`name` and :attr:`param_specs` (their hyperparameters
    as :class:`~fednlp_bench.registry.Param`) and implement :meth:`aggregate`.
    Parameters arrive as keyword arguments from ``config.algorithm_params``;
    every one is checked against its declaration, and unknown names are
    rejected with a suggestion.
    """

    #: Registry name (``--algorithm``).
    name: ClassVar[str]
    #: Human name in leaderboard tables (defaults to ``name``).
    label: ClassVar[str | None] = None
    #: Group that competes for one "best of family" mark in tables (e.g. ``"fedopt"``).
    family: ClassVar[str | None] = None
    #: The hyperparameters, declared once (checks, ``--NAME`` flags, ``fednlp-bench algorithms``, docs).
    param_specs: ClassVar[Mapping[str, Param]] = {}
    #: Hyperparameter -> default, derived from :attr:`param_specs`; ``self.params`` holds the merged values.
    defaults: ClassVar[dict[str, Any]] = {}
    #: True only for the centralized baseline: the runner trains one virtual
    #: client on the union of all client data with the same per-round budget.
    centralized: ClassVar[bool] = False
    #: True when :meth:`aggregate` only needs the mean of the deltas, so client-level DP can hand it
    #: one clipped, noised mean (``fednlp_bench.privacy``). False for anything that reads each
    #: client's own update, loss or state (median, Krum, control variates, ...).
    dp_compatible: ClassVar[bool] = False
    #: The algorithm's client side (hooks around local training), or None for plain local training.
    client: ClassVar[type[ClientProcedure] | None] = None
    #: Hyperparameters a fair tuning grid must search besides the client lr (protocol v2: each
    #: algorithm's optimum must be reachable, e.g. FedProx's mu, FedOpt's server lr).
    search_params: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "param_specs" not in vars(cls) and "defaults" in vars(cls):
            # A plug-in written with a plain ``defaults`` dict: numbers must be finite numbers, the rest is its own.
            cls.param_specs = declare(*(Param(k, _declared_type(v), v) for k, v in cls.defaults.items()))
        cls.defaults = {name: p.default for name, p in cls.param_specs.items()}

    def __init__(self, **params: Any) -> None:
        # Values stay as given (an int 1 stays 1): the config stores them so, and the strategy computes with them.
        self.params: dict[str, Any] = resolve_params(self.param_specs, params, owner=f"algorithm {self.name!r}",
                                                     prefix=f"{self.name} ", normalize=False)
        self.validate_params()

    # --------------------------------------------------------------- hooks
    def validate_params(self) -> None:
        """Cross-parameter checks the single declarations cannot express (none by default)."""

    def setup(self, num_clients: int, global_weights: Weights, trainable: Sequence[str]) -> None:
        """Called once before the first round (and before ``load_state_dict`` on resume).

        ``num_clients`` is the partition's size N (SCAFFOLD's |S|/N),
        ``global_weights`` the initial model and ``trainable`` the names of its
        trainable parameters (the tensors a server-side control variate matches).
        """

    def make_client(self) -> ClientProcedure | None:
        """The procedure every client runs this run (what the backend hands to the local trainer)."""
        return None if self.client is None else self.client()

    def client_config(self, rnd: int) -> dict[str, Any]:
        """Instructions sent to every selected client in round ``rnd`` (default: none)."""
        return {}

    def configure_round(self, rnd: int, client_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Per-client instructions (the download payload besides the model) for round ``rnd``.

        Every key must be one the strategy's client procedure reads (its
        ``instructions``), so a typo fails here instead of being ignored.
        """
        config = self.client_config(rnd)
        self.check_instructions(config)
        return {cid: dict(config) for cid in client_ids}

    def check_instructions(self, config: Mapping[str, Any]) -> None:
        procedure = self.make_client()  # the instance, so a wrapper's Composed procedure is checked as a whole
        known = procedure.instructions if procedure is not None else ()
        for key in config:
            if key not in known:
                raise ValueError(
                    f"{self.name} sends client instruction {key!r}, which its client procedure "
                    f"({type(procedure).__name__ if procedure else 'none'}) does not read; it reads: {list(known)}"
                )

    @abstractmethod
    def aggregate(self, rnd: int, global_weights: Weights, results: Sequence[ClientResult]) -> Weights:
        """New global weights from the accepted client results of round ``rnd``.

        ``results`` is never empty (the engine keeps the old weights when every
        client dropped out or was rejected). Must not modify ``global_weights``.
        """

    def state_dict(self) -> dict[str, StateValue]:
        """Server state for checkpoints: flat ``key -> tensor | JSON value``."""
        return {}

    def load_state_dict(self, state: Mapping[str, StateValue]) -> None:
        """Restore what :meth:`state_dict` returned."""
        if state:
            raise ValueError(f"{self.name} keeps no server state but the checkpoint has {sorted(state)}")


# ---------------------------------------------------------------- helpers
def _declared_type(default: Any) -> type:
    if isinstance(default, bool):
        return bool
    return float if isinstance(default, (int, float)) else object


def weighted_mean_delta(results: Sequence[ClientResult], weights: Sequence[float] | None = None) -> Weights:
    """Sum_i w_i * delta_i / Sum_i w_i (w_i = num_examples unless given): FedAvg's average."""
    if not results:
        raise ValueError("cannot average zero client results")
    if weights is None:
        weights = [float(r.num_examples) for r in results]
    total = float(sum(weights))
    if total <= 0:
        raise ValueError(f"client weights must sum to a positive number, got {list(weights)}")
    mean: Weights = {}
    for name in results[0].delta:
        acc = torch.zeros_like(results[0].delta[name])
        for r, w in zip(results, weights):
            acc.add_(r.delta[name], alpha=w / total)
        mean[name] = acc
    return mean


def add_scaled(base: Weights, update: Weights, scale: float = 1.0) -> Weights:
    """base + scale * update as new tensors (base is left untouched)."""
    return {name: base[name] + update[name] * scale if scale != 1.0 else base[name] + update[name] for name in base}
