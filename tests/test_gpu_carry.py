"""The GPU carry: its size guard (one device command moves <= 64 MiB, checkout included) and the packed MiniLM weights."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[1]
MiB = 1 << 20


def _weights_module():
    spec = importlib.util.spec_from_file_location("gpu_carry_weights", ROOT / "scripts" / "gpu_carry_weights.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def check(carry: Path, limit: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CARRY_DIR": str(carry), "CARRY_LIMIT_MIB": limit}
    return subprocess.run(["bash", str(ROOT / "scripts" / "make_gpu_carry.sh"), "--check"], env=env,
                          capture_output=True, text=True, timeout=120)


def checkout_bytes() -> int:
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.splitlines()
    return sum((ROOT / n).stat().st_size for n in names if (ROOT / n).is_file() and not (ROOT / n).is_symlink())


def test_size_guard_counts_checkout_and_carry_and_refuses_over_the_limit(tmp_path: Path) -> None:
    carry = tmp_path / "carry"
    carry.mkdir()
    (carry / "blob").write_bytes(os.urandom(5 * MiB))
    ok = check(carry, "64")
    assert ok.returncode == 0, ok.stderr
    line = re.search(r"carry: \S+ ([\d.]+) MiB \+ checkout ([\d.]+) MiB = ([\d.]+) MiB \(limit 64 MiB", ok.stdout)
    assert line, ok.stdout
    carried, checkout, total = map(float, line.groups())
    assert carried == pytest.approx(5.0, abs=0.05)  # du -sb: the file plus the folder entry
    assert checkout == pytest.approx(checkout_bytes() / MiB, abs=0.15)
    assert total == pytest.approx(carried + checkout, abs=0.1)
    limit = int(total)  # a limit just under what the command would move
    refused = check(carry, str(limit))
    assert refused.returncode == 1
    errors = refused.stderr.strip().splitlines()
    assert len(errors) == 1 and f"over the {limit} MiB one device command carries" in errors[0]
    assert (carry / "blob").is_file()  # --check measures; it removes only a folder it built itself


@pytest.mark.parametrize(("args", "limit", "message"), [
    (["--check"], "64.5", "CARRY_LIMIT_MIB='64.5' must be a positive whole number"),
    (["--check"], "0", "CARRY_LIMIT_MIB='0' must be a positive whole number"),
    (["--fast"], "64", "unknown argument '--fast'"),
    (["--check"], "64", "does not exist; build it with"),
])
def test_bad_input_is_one_line_before_any_work(tmp_path: Path, args: list[str], limit: str, message: str) -> None:
    env = {**os.environ, "CARRY_DIR": str(tmp_path / "missing"), "CARRY_LIMIT_MIB": limit}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "make_gpu_carry.sh"), *args], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "missing").exists()


def test_packed_weights_round_trip_within_float16_rounding_and_exact_where_it_cannot(tmp_path: Path) -> None:
    weights = _weights_module()
    gen = torch.Generator().manual_seed(0)
    normal = torch.randn(64, 32, generator=gen) * 0.05
    tiny = torch.tensor([3e-5, -1e-6, 1e-9, 0.0, 7e4, -1e5, 1.0, 0.5])  # subnormal, flushed, overflow, exact
    ids = torch.arange(512).reshape(1, 512)
    src, packed, back = tmp_path / "w.safetensors", tmp_path / "p.safetensors", tmp_path / "b.safetensors"
    save_file({"a.weight": normal, "b.weight": tiny, "position_ids": ids}, str(src), metadata={"format": "pt"})
    stats = weights.pack(src, packed)
    assert stats["floats"] == 64 * 32 + 8
    assert stats["patched"] == 5  # 3e-5, -1e-6, 1e-9 lose bits in float16; 7e4 and -1e5 overflow it
    # 2 bytes saved per float, 12 spent per patch (int64 index + float32 value), headers aside
    assert packed.stat().st_size <= src.stat().st_size - 2 * stats["floats"] + 12 * 5 + 1024
    weights.unpack(packed, back)
    out = load_file(str(back))
    assert out["position_ids"].dtype == torch.int64 and torch.equal(out["position_ids"], ids)
    assert torch.equal(out["b.weight"], tiny)  # patched values and float16-exact ones come back bit for bit
    assert out["a.weight"].dtype == torch.float32
    rel = ((out["a.weight"] - normal).abs() / normal.abs()).max().item()
    assert 0 < rel <= 2.0**-11
    with pytest.raises(ValueError, match="is not a packed weights file"):
        weights.unpack(src, tmp_path / "again.safetensors")
    with pytest.raises(ValueError, match="already holds float16"):
        weights.pack(packed, tmp_path / "twice.safetensors")


@pytest.mark.slow
def test_minilm_from_packed_weights_embeds_like_the_original(tmp_path: Path) -> None:
    """The weights the GPU carry ships: how far the float16-rounded MiniLM moves a sentence embedding."""
    from transformers import AutoModel, AutoTokenizer

    from fednlp_bench.paths import default_model_path

    weights = _weights_module()
    original = default_model_path()
    packed = tmp_path / "packed.safetensors"
    stats = weights.pack(original / "model.safetensors", packed)
    assert stats["floats"] == 22_713_216 and 1_000 < stats["patched"] < 100_000
    assert stats["bytes"] < 46 * MiB
    copy = tmp_path / "model"
    copy.mkdir()
    for path in original.iterdir():
        if path.is_file() and path.name != "model.safetensors":
            (copy / path.name).write_bytes(path.read_bytes())
    weights.unpack(packed, copy / "model.safetensors")
    tok = AutoTokenizer.from_pretrained(str(original))
    batch = tok(["Federated averaging of a sentence encoder.", "The Red Sox won the game in extra innings.",
                 "Subject: meeting moved to Thursday"], padding=True, return_tensors="pt")
    embeddings = []
    for folder in (original, copy):
        model = AutoModel.from_pretrained(str(folder), dtype=torch.float32).eval()
        assert next(model.parameters()).dtype == torch.float32
        with torch.no_grad():
            embeddings.append(model(**batch).last_hidden_state)
    cosine = torch.nn.functional.cosine_similarity(embeddings[0], embeddings[1], dim=-1)
    assert cosine.min().item() > 0.99999
    assert 0 < (embeddings[0] - embeddings[1]).abs().max().item() < 1e-2


def test_run_gpu_tier_refuses_a_carry_without_its_install_script(tmp_path: Path) -> None:
    env = {**os.environ, "CARRY": str(tmp_path)}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "run_gpu_tier.sh"), "--dry-run"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and f"CARRY={tmp_path} has no install.sh" in done.stderr
