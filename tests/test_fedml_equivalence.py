"""FedML backend == in-process backend: same seed, task, partition and algorithm -> same global weights.

The FedML runs need the FedML virtualenv (``bash scripts/setup_fedml_env.sh``,
or $FEDNLP_FEDML_PYTHON) and Open MPI's ``mpirun``; without them those tests
are skipped with the install command as the reason, unless
FEDNLP_REQUIRE_FEDML=1 (CI), which makes them run and fail. Each FedML run starts
P+1 Python processes that import FedML (~15-25 s on 2 cores), so the toy
model keeps the training itself negligible.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from fednlp_bench import cli
from fednlp_bench.backends.fedml import environment as fedml_env
from fednlp_bench.backends import launch
from fednlp_bench.backends.fedml import launcher as fedml_backend
from fednlp_bench.backends.fedml.launcher import FedMLUnavailable, check_fedml_environment, run_fedml_experiment
from fednlp_bench.config import RunConfig
from fednlp_bench.engine.run import checkpoint as ckpt
from fednlp_bench.engine.run import runner, sources
from fednlp_bench.sampling.seeds import central_seed, client_seed
from fednlp_bench.engine.server.simulator import InProcessBackend
from fednlp_bench.testing.toy import ToyTask, toy_partition

TASK_KWARGS = {"n_train": 60, "n_test": 40, "hidden": 8}


def _fedml_reason() -> str | None:
    try:
        check_fedml_environment()
    except FedMLUnavailable as err:
        return str(err)
    return None


FEDML_MISSING = _fedml_reason()
#: One worker runs these one after another under pytest-xdist: each starts several processes (MPI or gRPC on
#: fixed 127.0.0.1 ports), too many for two at once on a 2-core machine.
pytestmark = pytest.mark.xdist_group("fedml")
#: CI sets this so the FedML tests cannot pass by being skipped: they run, and fail with the install message.
REQUIRE_FEDML = os.environ.get("FEDNLP_REQUIRE_FEDML") == "1"
needs_fedml = pytest.mark.skipif(FEDML_MISSING is not None and not REQUIRE_FEDML,
                                 reason=f"FedML environment absent: {FEDML_MISSING}")


def toy_config(**changes: object) -> RunConfig:
    base = dict(
        task="toy", model="toy", algorithm="fedavg", rounds=3, clients_per_round=3,
        partition={"scheme": "quantity_skew", "num_clients": 6, "seed": 0, "min_size": 1},
        lr=0.1, optimizer="sgd", batch_size=8, local_epochs=1, seed=7,
    )
    base.update(changes)
    return RunConfig.from_dict(base)


def run_inprocess(cfg: RunConfig, runs_dir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(sources, "build_partition", toy_partition)
    record = runner.run_experiment(cfg, runs_dir, task=ToyTask(**TASK_KWARGS), progress=False)
    return record, ckpt.load_checkpoint(runs_dir / record.run_id).weights


def run_fedml(cfg: RunConfig, runs_dir: Path, resume: bool = False, **kw: object):
    """Through the launcher, as `fednlp-bench run --backend fedml` does."""
    options = dict(task_factory="fednlp_bench.testing.toy:ToyTask", task_kwargs=TASK_KWARGS,
                   partition_factory="fednlp_bench.testing.toy:toy_partition", round_timeout_s=120, **kw)
    record = launch.run_config(cfg.replace(backend="fedml"), runs_dir, resume=resume, backend_options=options)
    return record, ckpt.load_checkpoint(runs_dir / record.run_id).weights


def assert_same_run(a, b) -> None:
    (rec_a, w_a), (rec_b, w_b) = a, b
    assert rec_a.config["backend"] == "inprocess" and rec_b.config["backend"] == "fedml"
    assert {**rec_a.config, "backend": "fedml"} == rec_b.config
    assert [r.clients for r in rec_a.rounds] == [r.clients for r in rec_b.rounds]
    assert [r.rejected_clients for r in rec_a.rounds] == [r.rejected_clients for r in rec_b.rounds]
    assert sorted(w_a) == sorted(w_b)
    moved = max(float((w_a[k] - w_b[k]).abs().max()) for k in w_a)
    assert moved < 1e-5, f"final global weights differ by {moved}"
    for ra, rb in zip(rec_a.rounds, rec_b.rounds):
        assert ra.train_loss == pytest.approx(rb.train_loss, rel=1e-5, abs=1e-6)
        assert ra.bytes_up == rb.bytes_up and ra.bytes_down == rb.bytes_down
    assert rec_a.final_metrics == pytest.approx(rec_b.final_metrics, rel=1e-5, abs=1e-6)


@needs_fedml
@pytest.mark.parametrize(
    ("algorithm", "params", "processes"),
    [("fedavg", {}, 3), ("fedadam", {"server_lr": 0.05}, 2), ("scaffold", {}, 2)],
    ids=["fedavg-3proc", "fedadam-2proc", "scaffold-2proc"],  # scaffold: client procedure, on-disk states, payloads
)
def test_fedml_mpi_matches_inprocess(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, algorithm: str,
                                     params: dict, processes: int) -> None:
    cfg = toy_config(algorithm=algorithm, algorithm_params=params)
    inproc = run_inprocess(cfg, tmp_path / "inprocess", monkeypatch)
    fed = run_fedml(cfg, tmp_path / "fedml", processes=processes)
    # The model really trained (otherwise equality would prove nothing).
    start = ToyTask(**TASK_KWARGS)
    torch.manual_seed(cfg.seed)
    init = dict(start.build_model().state_dict())
    assert max(float((inproc[1][k] - init[k]).abs().max()) for k in init) > 1e-3
    assert_same_run(inproc, fed)
    assert (tmp_path / "fedml" / fed[0].run_id / "fedml.log").is_file()


#: Settings that change which rows a client trains on: the client_eval hold-out and the continual periods.
ROW_SETTINGS = {
    "client_eval": dict(client_eval=True, partition={"scheme": "quantity_skew", "num_clients": 6, "seed": 0,
                                                     "min_size": 2}),
    "continual": dict(rounds=4, continual={"periods": 2, "retention": 1, "rounds_per_period": 2}),
}


@needs_fedml
@pytest.mark.parametrize("setting", sorted(ROW_SETTINGS))
def test_fedml_client_eval_and_continual_match_inprocess(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         setting: str) -> None:
    """client_eval and continual on FedML: same weights, same per-client results, same periods as in-process."""
    cfg = toy_config(algorithm="fedadam", algorithm_params={"server_lr": 0.05}, **ROW_SETTINGS[setting])
    inproc = run_inprocess(cfg, tmp_path / "inprocess", monkeypatch)
    fed = run_fedml(cfg, tmp_path / "fedml", processes=2)
    assert_same_run(inproc, fed)
    section_a, section_b = getattr(inproc[0], setting), getattr(fed[0], setting)
    assert section_a is not None and json.dumps(section_a, sort_keys=True) == json.dumps(section_b, sort_keys=True)


def _rank_spec(cfg: RunConfig, run_dir: Path) -> dict:
    """What the launcher writes for a client rank (the parts prepare_rank_client reads)."""
    return {"config": cfg.replace(backend="fedml").to_dict(), "task_factory": "fednlp_bench.testing.toy:ToyTask",
            "task_kwargs": TASK_KWARGS, "partition_factory": "fednlp_bench.testing.toy:toy_partition",
            "run_dir": str(run_dir), "device": None, "frozen_cache_dir": None}


@pytest.mark.parametrize("setting", sorted(ROW_SETTINGS))
def test_client_process_trains_on_the_inprocess_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     setting: str) -> None:
    """A FedML client rank's setup (prepare_client, no FedML needed) holds the simulator's rows in every round."""
    from fednlp_bench.backends.fedml.client import prepare_rank_client
    from fednlp_bench.engine.run.prepare import prepare_run

    monkeypatch.setattr(sources, "build_partition", toy_partition)  # restored after the test (load_seams sets it)
    cfg = toy_config(**ROW_SETTINGS[setting])
    inproc = prepare_run(cfg, "x", tmp_path / "a", None, task=ToyTask(**TASK_KWARGS))
    rank = prepare_rank_client(_rank_spec(cfg, tmp_path / "b"), rank=1)
    full = toy_partition(ToyTask(**TASK_KWARGS).load()["train"], cfg.partition)
    assert len(rank.trainer.features) == len(inproc.trainer.features)
    changed = 0
    for rnd in range(1, cfg.rounds + 1):
        for cid in range(full.num_clients):
            ours, theirs = rank.rows(cid, rnd), inproc.client.rows(cid, rnd)
            assert ours.tolist() == theirs.tolist(), (setting, rnd, cid)
            changed += len(ours) != len(full.indices(cid))
    assert changed > 0, "the setting should change the rows a client trains on"
    assert rank.runner.procedure.__class__ is inproc.client.runner.procedure.__class__


def _grpc_reason() -> str | None:
    if FEDML_MISSING is not None:
        return FEDML_MISSING
    try:
        check_fedml_environment(comm="GRPC")
    except FedMLUnavailable as err:
        return str(err)
    return None


@pytest.mark.skipif(_grpc_reason() is not None and not REQUIRE_FEDML, reason=f"FedML gRPC environment absent: {_grpc_reason()}")
def test_fedml_grpc_loopback_matches_inprocess(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = toy_config(algorithm="fedadam", algorithm_params={"server_lr": 0.05}, rounds=2)
    assert_same_run(run_inprocess(cfg, tmp_path / "inprocess", monkeypatch),
                    run_fedml(cfg, tmp_path / "fedml", processes=2, comm="GRPC"))


@needs_fedml
def test_dead_client_process_stops_the_run_and_resume_finishes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client process dying in round 2 ends the run (no hang) with round 1 checkpointed; --resume completes it."""
    from fednlp_bench.backends.fedml.messages import FAULT_ENV
    from fednlp_bench.backends.fedml.launcher import FedMLRunError

    cfg = toy_config(algorithm="fedadam", algorithm_params={"server_lr": 0.05})
    monkeypatch.setenv(FAULT_ENV, "2:2")
    with pytest.raises(FedMLRunError, match=r"last finished round \(1\) is checkpointed, rerun with --resume"):
        run_fedml(cfg, tmp_path / "fedml", processes=2)
    monkeypatch.delenv(FAULT_ENV)
    resumed = run_fedml(cfg, tmp_path / "fedml", processes=2, resume=True)
    assert [r.round for r in resumed[0].rounds] == [1, 2, 3]
    assert_same_run(run_inprocess(cfg, tmp_path / "inprocess", monkeypatch), resumed)


# ------------------------------------------------------------------ bad input (no FedML needed)
def test_missing_fedml_names_the_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fedml_env, "DEFAULT_FEDML_VENV", tmp_path / "nowhere")
    monkeypatch.delenv(fedml_env.FEDML_PYTHON_ENV, raising=False)
    with pytest.raises(FedMLUnavailable, match="scripts/setup_fedml_env.sh"):
        run_fedml_experiment(toy_config(), tmp_path / "runs")


def test_named_fedml_python_that_does_not_exist_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$FEDNLP_FEDML_PYTHON set wrong must not fall back to <repo>/.fedml-venv (CI would test another env)."""
    monkeypatch.setenv(fedml_env.FEDML_PYTHON_ENV, str(tmp_path / "nope" / "python"))
    with pytest.raises(FedMLUnavailable, match=r"\$FEDNLP_FEDML_PYTHON=.*nope/python does not exist"):
        check_fedml_environment()


def test_missing_mpirun_names_apt_and_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "python"
    fake.write_text("")
    monkeypatch.setattr(fedml_env.shutil, "which", lambda name: None)
    with pytest.raises(FedMLUnavailable, match=r"apt-get install -y openmpi-bin libopenmpi-dev[\s\S]*pip install mpi4py"):
        check_fedml_environment(python=fake)


@pytest.mark.parametrize(
    ("changes", "kw", "match"),
    [
        ({"algorithm": "centralized"}, {}, "centralized baseline"),
        ({}, {"processes": 4}, "processes=4 must be between 1 and clients_per_round"),
        ({}, {"comm": "MQTT"}, "comm='MQTT'"),
    ],
)
def test_bad_input_fails_before_any_process_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, changes: dict,
                                                   kw: dict, match: str) -> None:
    fake = tmp_path / "python"
    fake.write_text("")
    with pytest.raises(ValueError, match=match):
        run_fedml_experiment(toy_config(**changes), tmp_path / "runs", python=fake, **kw)


SEED_CASES = [(s, r, c) for s in (0, 7, 123456789) for r in (1, 2, 50) for c in (0, 3, 999)]


def test_client_seed_is_exact_integer_arithmetic() -> None:
    """NumPy 1.x computed ``uint64 % int`` in float64 (3149698380288261825 -> ...632); the seed must not round."""
    assert client_seed(7, 1, 3) == 3149698380288261825
    assert central_seed(7, 1) == 6706558573826173919
    assert all(0 <= client_seed(*x) < 2**63 - 1 for x in SEED_CASES)


@needs_fedml
def test_fedml_venv_numpy1_gives_the_same_seeds() -> None:
    """Under FedML's NumPy 1.x the engine's seeds equal the core (NumPy 2) ones, so clients shuffle alike."""
    py = fedml_env.find_fedml_python()
    code = ("import json, numpy; from fednlp_bench.sampling.seeds import client_seed, central_seed; "
            f"print(json.dumps([numpy.__version__, [client_seed(*x) for x in {SEED_CASES!r}], "
            "[central_seed(s, r) for s, r in [(0, 1), (7, 1), (7, 50)]]]))")
    env = {**os.environ, "PYTHONPATH": str(fedml_env.REPO_ROOT)}
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=120, env=env, check=True)
    version, clients, central = json.loads(out.stdout)
    assert version.startswith("1."), f"the FedML venv should carry FedML's numpy<2 pin, has {version}"
    assert clients == [client_seed(*x) for x in SEED_CASES]
    assert central == [central_seed(s, r) for s, r in [(0, 1), (7, 1), (7, 50)]]


# ------------------------------------------------------------------ the engine hook and the CLI (no FedML needed)
def test_backend_factory_runs_the_rounds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A given backend factory replaces InProcessBackend; backend "fedml" with a factory is not relaunched."""
    monkeypatch.setattr(sources, "build_partition", toy_partition)
    calls: list[int] = []

    class Counting(InProcessBackend):
        def run_round(self, rnd, instructions, global_weights, seed):  # type: ignore[no-untyped-def]
            calls.append(rnd)
            return super().run_round(rnd, instructions, global_weights, seed)

    cfg = toy_config(rounds=2)
    plain, _ = run_inprocess(cfg, tmp_path / "a", monkeypatch)
    hooked = runner.run_experiment(cfg.replace(backend="fedml"), tmp_path / "b", task=ToyTask(**TASK_KWARGS),
                                   progress=False, backend_factory=Counting)
    assert calls == [1, 2]
    assert hooked.config["backend"] == "fedml"
    assert hooked.final_metrics == plain.final_metrics


@pytest.mark.parametrize(
    ("backend", "kw", "match"),
    [
        ("inprocess", {"backend_options": {"processes": 2}}, r"backend options \['processes'\] apply only to backend 'fedml'"),
        ("fedml", {"backend_options": {"proceses": 2}}, "backend 'fedml' has no parameter 'proceses'. Did you mean 'processes'"),
        ("fedml", {"task": ToyTask(**TASK_KWARGS)}, "takes no task object"),
    ],
)
def test_launcher_rejects_misplaced_backend_arguments(tmp_path: Path, backend: str, kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        launch.run_config(toy_config(backend=backend), tmp_path, **kw)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_cli_backend_fedml_without_the_env_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(fedml_env, "DEFAULT_FEDML_VENV", tmp_path / "nowhere")
    monkeypatch.delenv(fedml_env.FEDML_PYTHON_ENV, raising=False)
    argv = ["run", "--task", "toy", "--model", "toy", "--scheme", "iid", "--clients", "4", "--clients-per-round", "2",
            "--rounds", "1", "--runs-dir", str(tmp_path / "runs"), "--backend", "fedml", "--processes", "2"]
    assert cli.main(argv) == 2
    assert "bash scripts/setup_fedml_env.sh" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    assert cli.main([*argv[:-4], "--comm", "GRPC"]) == 2  # --comm without --backend fedml
    assert "--comm: only for --backend fedml" in capsys.readouterr().err
