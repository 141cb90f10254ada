"""FedML over gRPC across machines, tested across network namespaces on one machine.

Three namespaces stand in for three hosts: the server's holds a bridge at
198.18.N.1 and each client's is joined to it by a veth pair (198.18.N.2,
198.18.N.3; 198.18.0.0/15 is the range reserved for network benchmarks). No
process shares a loopback with another, so every message goes over the
links. Each "host" runs the one command a user would run on that machine
(``fednlp-bench run ... --hosts H --role server|client``), and the final
weights must equal the in-process backend's bit for bit.

Needs root (``ip netns``) and the FedML environment. Without them the tests
skip with the reason, unless FEDNLP_REQUIRE_NETNS=1 / FEDNLP_REQUIRE_FEDML=1
(CI), which make them fail instead. The netem delay test also needs the
kernel's sch_netem module; where ``tc qdisc ... netem`` is unknown it skips
alone, naming that. Every namespace, link and process a test makes is removed
in teardown, also on failure; every wait is bounded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fednlp_bench.backends.fedml import launcher as fedml_backend
from fednlp_bench.backends.fedml.launcher import FedMLUnavailable, check_fedml_environment
from fednlp_bench.backends.netns import NetemUnavailable, NetnsLab, netns_unavailable
from fednlp_bench.config import RunConfig
from fednlp_bench.engine.run import checkpoint as ckpt
from fednlp_bench.results.record import RunRecord

#: One worker runs these one after another under pytest-xdist: each starts several processes (MPI or gRPC on
#: fixed 127.0.0.1 ports), too many for two at once on a 2-core machine.
pytestmark = pytest.mark.xdist_group("fedml")
REQUIRE_NETNS = os.environ.get("FEDNLP_REQUIRE_NETNS") == "1"
REQUIRE_FEDML = os.environ.get("FEDNLP_REQUIRE_FEDML") == "1"
#: Bound for one group of host commands (3 launchers + 3 FedML processes start at once: ~3.5 min measured on
#: 2 cores under load average ~10, far less on an idle machine).
COMMAND_TIMEOUT_S = 420


def _fedml_reason() -> str | None:
    try:
        check_fedml_environment(comm="GRPC")
    except FedMLUnavailable as err:
        return str(err)
    return None


NETNS_MISSING = netns_unavailable()
FEDML_MISSING = _fedml_reason()
needs_lab = pytest.mark.skipif(
    (NETNS_MISSING is not None and not REQUIRE_NETNS) or (FEDML_MISSING is not None and not REQUIRE_FEDML),
    reason=f"network namespaces: {NETNS_MISSING or 'ok'}; FedML gRPC: {FEDML_MISSING or 'ok'}",
)


@pytest.fixture
def lab():
    """Three namespaces on one bridge; removed with every process left in them, whatever happened."""
    if NETNS_MISSING is not None:
        pytest.fail(f"FEDNLP_REQUIRE_NETNS=1 but {NETNS_MISSING}")
    with NetnsLab(hosts=3) as the_lab:
        yield the_lab


def tiny_config(rounds: int = 2) -> RunConfig:
    """FedAdam on 20News with the tiny random BERT, 2 clients per round: small enough for 2 shared cores."""
    return RunConfig.from_dict(dict(
        task="classification", model="tiny", max_length=32, max_train_examples=96, max_eval_examples=32,
        algorithm="fedadam", algorithm_params={"server_lr": 0.01}, rounds=rounds, clients_per_round=2,
        partition={"scheme": "iid", "num_clients": 4, "seed": 0, "min_size": 1, "params": {}},
        lr=1e-3, optimizer="adamw", batch_size=8, local_epochs=None, local_steps=2, seed=3, eval_every=rounds,
        backend="fedml",
    ))


def write_config(cfg: RunConfig, path: Path) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(cfg.to_dict()))
    return path


def host_command(config_file: Path, runs_dir: Path, lab: NetnsLab, *extra: str, round_timeout: int = 60,
                 connect_timeout: int = 120) -> list[str]:
    return [sys.executable, "-m", "fednlp_bench.cli", "run", "--config", str(config_file), "--runs-dir", str(runs_dir),
            "--run-id", "multihost", "--backend", "fedml", "--comm", "GRPC", "--hosts", ",".join(lab.addresses),
            "--round-timeout", str(round_timeout), "--connect-timeout", str(connect_timeout), "--threads", "1",
            "--no-progress", *extra]


def scratch(tmp: Path) -> dict[str, str]:
    """The launchers' work folders (spec, logs; kept after a failure) go under the test's tmp, not /tmp."""
    return {"TMPDIR": str(tmp)}


def wait_all(procs: list[subprocess.Popen], timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    for proc in procs:
        try:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pytest.fail(f"a host command ran over {timeout_s:.0f} s: {proc.args}")
    return [proc.returncode for proc in procs]


def run_three_hosts(lab: NetnsLab, tmp: Path, cfg: RunConfig, client_env: dict[int, dict[str, str]] | None = None,
                    resume: bool = False, round_timeout: int = 60) -> tuple[list[int], str]:
    """The server's and both clients' commands, each in its namespace; returns exit codes and the server's log."""
    config_file = write_config(cfg, tmp / "config.yaml")
    runs = tmp / "runs"
    extra = ["--resume"] if resume else []
    tag = "resume" if resume else "run"
    server = lab.start(0, host_command(config_file, runs, lab, "--role", "server", *extra, round_timeout=round_timeout),
                       tmp / f"server-{tag}.log", scratch(tmp))
    clients = [lab.start(r, host_command(config_file, runs, lab, "--rank", str(r), round_timeout=round_timeout),
                         tmp / f"client{r}-{tag}.log", {**scratch(tmp), **(client_env or {}).get(r, {})}) for r in (1, 2)]
    codes = wait_all([server, *clients], COMMAND_TIMEOUT_S)
    return codes, (tmp / f"server-{tag}.log").read_text(errors="replace")


def inprocess_weights(cfg: RunConfig, tmp: Path) -> tuple[RunRecord, dict[str, torch.Tensor]]:
    """The in-process backend on the same config, here in the core environment (bit-identical to the FedML venv's)."""
    from fednlp_bench.engine.run import runner

    torch.set_num_threads(1)
    record = runner.run_experiment(cfg.replace(backend="inprocess"), tmp / "inproc", run_id="inproc", progress=False)
    return record, ckpt.load_checkpoint(tmp / "inproc" / "inproc").weights


def assert_bit_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[0]}: max {float((a[differ[0]] - b[differ[0]]).abs().max())}"


@needs_lab
def test_three_namespaces_fedadam_matches_inprocess_bit_for_bit(lab: NetnsLab, tmp_path: Path) -> None:
    cfg = tiny_config()
    codes, log = run_three_hosts(lab, tmp_path, cfg)
    assert codes == [0, 0, 0], log
    record = RunRecord.load(tmp_path / "runs" / "multihost")
    weights = ckpt.load_checkpoint(tmp_path / "runs" / "multihost").weights
    ref_record, ref_weights = inprocess_weights(cfg, tmp_path)
    assert_bit_identical(weights, ref_weights)
    assert [r.clients for r in record.rounds] == [r.clients for r in ref_record.rounds]
    assert record.final_metrics == ref_record.final_metrics
    # The record says which rank ran where: each at its own namespace's address, none on loopback.
    placement = record.hardware["fedml"]
    assert placement["comm"] == "GRPC"
    assert [(r["rank"], r["role"], r["endpoint"]) for r in placement["ranks"]] == [
        (0, "server", f"{lab.addresses[0]}:18890"), (1, "client", f"{lab.addresses[1]}:18891"),
        (2, "client", f"{lab.addresses[2]}:18892")]
    assert len({r["pid"] for r in placement["ranks"]}) == 3
    # Each client host printed where its record is.
    assert "the record is written on the server machine" in (tmp_path / "client1-run.log").read_text()


@pytest.mark.slow
@needs_lab
def test_killed_client_stops_the_run_resumably_and_resume_matches(lab: NetnsLab, tmp_path: Path) -> None:
    """Client rank 2's process is SIGKILLed in round 2: the server names it and stops (round 1 checkpointed), rank 1
    stops by itself, nobody hangs; the same three commands with --resume finish bit-identical to in-process."""
    from fednlp_bench.backends.fedml.messages import FAULT_ENV

    cfg = tiny_config(rounds=3)
    t0 = time.monotonic()
    codes, log = run_three_hosts(lab, tmp_path, cfg, client_env={2: {FAULT_ENV: "2:2"}})
    stopped_s = time.monotonic() - t0
    assert codes[0] == 1 and codes[2] != 0 and codes[1] != 0, (codes, log)
    assert "rank 2 at" in log and "stopped accepting connections" in log, log
    assert "last finished round (1) is checkpointed, rerun with --resume" in log, log
    client1 = (tmp_path / "client1-run.log").read_text()
    assert "stopped accepting connections" in client1 or "no message from the FedML server" in client1, client1
    assert stopped_s < COMMAND_TIMEOUT_S
    codes, log = run_three_hosts(lab, tmp_path, cfg, resume=True)
    assert codes == [0, 0, 0], log
    record = RunRecord.load(tmp_path / "runs" / "multihost")
    assert [r.round for r in record.rounds] == [1, 2, 3]
    assert_bit_identical(ckpt.load_checkpoint(tmp_path / "runs" / "multihost").weights, inprocess_weights(cfg, tmp_path)[1])


@pytest.mark.slow
@needs_lab
def test_server_names_the_client_ranks_that_never_connect(lab: NetnsLab, tmp_path: Path) -> None:
    config_file = write_config(tiny_config(), tmp_path / "config.yaml")
    # Only rank 1 comes up; rank 2's machine never runs its command.
    server = lab.start(0, host_command(config_file, tmp_path / "runs", lab, "--role", "server", connect_timeout=45),
                       tmp_path / "server.log", scratch(tmp_path))
    client = lab.start(1, host_command(config_file, tmp_path / "runs", lab, "--rank", "1"),
                       tmp_path / "client1.log", scratch(tmp_path))
    codes = wait_all([server, client], COMMAND_TIMEOUT_S)
    log = (tmp_path / "server.log").read_text()
    assert codes[0] == 1, log
    assert f"client rank(s) 2 (expected at {lab.addresses[2]}:18892) did not connect within 45 s" in log, log
    assert codes[1] != 0  # its server went away, so it stopped too


@pytest.mark.slow
@needs_lab
def test_delayed_client_link_finishes_with_longer_rounds(lab: NetnsLab, tmp_path: Path) -> None:
    """200 ms each way on rank 2's link: the run still finishes, identical, and its rounds take longer."""
    try:
        lab.delay(2, 200)
    except NetemUnavailable as err:
        pytest.skip(str(err))
    cfg = tiny_config()
    codes, log = run_three_hosts(lab, tmp_path, cfg)
    assert codes == [0, 0, 0], log
    record = RunRecord.load(tmp_path / "runs" / "multihost")
    # Each round has at least one message each way over the delayed link (model down, upload up).
    assert all(r.wall_time_s > 0.4 for r in record.rounds), [r.wall_time_s for r in record.rounds]
    assert_bit_identical(ckpt.load_checkpoint(tmp_path / "runs" / "multihost").weights, inprocess_weights(cfg, tmp_path)[1])


# ------------------------------------------------------------------ bad input (no FedML, no namespaces needed)
@pytest.mark.parametrize(
    ("hosts", "match"),
    [
        ("198.18.0.1", r"needs rank 0 \(the server\) and at least one client rank"),
        ("198.18.0.1,198.18.0.2:70000", r"port '70000' must be an integer in 1..65535"),
        ("198.18.0.1,not an ip", r"'not an ip' is not an IPv4 address or host name"),
        ("198.18.0.1:18890,198.18.0.1:18890", r"ranks 0 and 1 both use 198.18.0.1:18890"),
        ("nowhere/hosts.csv", r"no such file"),
    ],
)
def test_bad_host_lists_are_refused(hosts: str, match: str) -> None:
    from fednlp_bench.backends.fedml.hosts import parse_hosts

    with pytest.raises(ValueError, match=match):
        parse_hosts(hosts)


def test_fedml_ipconfig_csv_round_trips(tmp_path: Path) -> None:
    from fednlp_bench.backends.fedml.hosts import parse_hosts

    hosts = parse_hosts("198.18.0.1,198.18.0.2:19001,silo-b.example")
    path = hosts.write_ipconfig(tmp_path / "grpc_ipconfig.csv")
    assert path.read_text().splitlines() == [
        "eid,rank,grpc_server_ip,grpc_server_port", "0,0,198.18.0.1,18890", "1,1,198.18.0.2,19001",
        "2,2,silo-b.example,18892"]
    assert parse_hosts(path).addresses == hosts.addresses
    (tmp_path / "bad.csv").write_text("rank,ip\n0,198.18.0.1\n")
    with pytest.raises(ValueError, match="first line must be the header eid,rank,grpc_server_ip,grpc_server_port"):
        parse_hosts(tmp_path / "bad.csv")
    (tmp_path / "gap.csv").write_text("eid,rank,grpc_server_ip,grpc_server_port\n0,0,198.18.0.1,1\n2,2,198.18.0.3,2\n")
    with pytest.raises(ValueError, match=r"ranks must be 0..1 each once, got \[0, 2\]"):
        parse_hosts(tmp_path / "gap.csv")


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({}, [0, 1, 2, 3]),
        ({"role": "server"}, [0]),
        ({"role": "server", "client_ranks": "3"}, [0, 3]),
        ({"role": "client", "client_ranks": "1-2"}, [1, 2]),
        ({"rank": 0}, [0]),
        ({"rank": 2}, [2]),
    ],
)
def test_local_ranks(kw: dict, expected: list[int]) -> None:
    from fednlp_bench.backends.fedml.hosts import local_ranks

    assert local_ranks(3, **kw) == expected


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"role": "client"}, "--role client needs --client-ranks"),
        ({"role": "client", "client_ranks": "4"}, r"client rank\(s\) \[4\] out of range: this run has client ranks 1..3"),
        ({"rank": 1, "role": "client"}, "--rank N is a shorthand"),
        ({"client_ranks": "1"}, "--client-ranks needs --role"),
        ({"role": "client", "client_ranks": "1,x"}, "'x' is not a rank"),
        ({"role": "worker"}, r"--role 'worker'; choose one of \['server', 'client'\]"),
    ],
)
def test_bad_rank_selection_is_refused(kw: dict, match: str) -> None:
    from fednlp_bench.backends.fedml.hosts import local_ranks

    with pytest.raises(ValueError, match=match):
        local_ranks(3, **kw)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"hosts": "198.18.0.1,198.18.0.2"}, "need --comm GRPC"),
        ({"comm": "GRPC", "hosts": "198.18.0.1,198.18.0.2", "processes": 2}, "processes=2 but --hosts"),
        ({"comm": "GRPC", "role": "client", "client_ranks": "1"}, "call run_fedml_clients"),
        ({"comm": "GRPC", "connect_timeout_s": 0}, "connect_timeout_s=0 must be > 0"),
    ],
)
def test_multihost_options_fail_before_any_process_starts(tmp_path: Path, kw: dict, match: str) -> None:
    fake = tmp_path / "python"
    fake.write_text("")
    cfg = tiny_config().replace(clients_per_round=3)
    monkey_env = {"python": fake}
    with pytest.raises((ValueError, FedMLUnavailable), match=match):
        fedml_backend.run_fedml_experiment(cfg, tmp_path / "runs", **monkey_env, **kw)
    assert not (tmp_path / "runs").exists()


def test_split_run_refuses_an_algorithm_with_per_client_state(tmp_path: Path) -> None:
    """SCAFFOLD's client states live under the server's run directory: a client machine would not see them."""
    fake = tmp_path / "python"
    fake.write_text("")
    cfg = tiny_config().replace(algorithm="scaffold", algorithm_params={})
    with pytest.raises(ValueError, match="'scaffold' keeps per-client state on disk"):
        fedml_backend.run_fedml_experiment(cfg, tmp_path / "runs", python=fake, comm="GRPC", role="server")
    with pytest.raises(ValueError, match="'scaffold' keeps per-client state on disk"):
        fedml_backend.run_fedml_clients(cfg, hosts="198.18.0.1,198.18.0.2", client_ranks="1", python=fake)
