"""Device choice: a clear error without CUDA, one GPU per process, RNG state without CUDA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fednlp_bench import cli
from fednlp_bench.compute import device as device_mod
from fednlp_bench.compute.device import device_for_rank, resolve_device


# ------------------------------------------------------------------ device
def test_cuda_without_cuda_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for spec in ("cuda", "cuda:1"):
        with pytest.raises(ValueError, match=r"CUDA is not available.*--device cpu"):
            resolve_device(spec)
    assert resolve_device("auto") in (torch.device("cpu"), torch.device("mps"))
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"'tpu' is not supported; choose one of auto, cpu, cuda, cuda:N, mps"):
        resolve_device("tpu")


def test_cli_device_cuda_without_cuda_fails_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = cli.main(["run", "--task", "classification", "--model", "tiny", "--device", "cuda",
                     "--runs-dir", str(tmp_path / "runs"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--device cuda: CUDA is not available" in err and "--device cpu" in err
    assert not (tmp_path / "runs").exists()  # nothing was created or loaded


def test_one_gpu_per_process_round_robin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert resolve_device("cuda:2") == torch.device("cuda", 2)
    with pytest.raises(ValueError, match="only 3 CUDA device"):
        resolve_device("cuda:3")
    assert [device_for_rank("cuda", r) for r in range(5)] == ["cuda:0", "cuda:1", "cuda:2", "cuda:0", "cuda:1"]
    assert [device_for_rank("cuda:1", r) for r in range(3)] == ["cuda:1"] * 3  # explicit index pins every process
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_for_rank("cpu", 4) == "cpu"


def test_cuda_rng_state_is_skipped_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_mod.cuda_rng_states() is None
    device_mod.set_cuda_rng_states(torch.zeros(1, 8, dtype=torch.uint8))  # a GPU run resumed here: no error
