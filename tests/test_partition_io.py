"""Partition files: round trips, content hash, fingerprint checks, atomic writes, immutability."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset

from fednlp_bench.partitioners import (
    Partition,
    PartitionError,
    PartitionFileError,
    PartitionMismatchError,
    PartitionSpec,
    dataset_fingerprint,
    partition_dataset,
)
from fednlp_bench.partitioners import storage

DATA_DIR = Path(os.environ.get("FEDNLP_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="module")
def news() -> Dataset:
    with open(DATA_DIR / "20news" / "train.jsonl", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    return Dataset.from_dict({"id": [r["id"] for r in rows], "label": [r["label"] for r in rows]})


@pytest.fixture(scope="module")
def part(news) -> Partition:
    return partition_dataset(news, "dirichlet_label", 30, seed=7, min_size=20, label_column="label", alpha=0.5)


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_round_trip(tmp_path, news, part, suffix):
    path = tmp_path / f"part{suffix}"
    part.save(path)
    loaded = Partition.load(path, fingerprint=dataset_fingerprint(news))
    assert loaded == part and loaded.content_hash == part.content_hash
    assert loaded.spec == part.spec
    assert loaded.spec.to_dict() == {
        "scheme": "dirichlet_label",
        "num_clients": 30,
        "seed": 7,
        "min_size": 20,
        "params": {"alpha": 0.5, "balance": True},
        "fingerprint": dataset_fingerprint(news),
        "num_rows": len(news),
    }
    for c in range(part.num_clients):
        assert np.array_equal(loaded.indices(c), part.indices(c))
        assert loaded.indices(c).dtype == np.int64
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp files left


def test_npz_is_smaller_than_json_for_many_rows(tmp_path):
    ds = Dataset.from_dict({"label": np.random.default_rng(0).integers(0, 20, 300_000)})
    big = partition_dataset(ds, "dirichlet_label", 100, label_column="label", alpha=1.0)
    big.save(tmp_path / "p.json")
    big.save(tmp_path / "p.npz")
    assert (tmp_path / "p.npz").stat().st_size < 0.5 * (tmp_path / "p.json").stat().st_size
    assert Partition.load(tmp_path / "p.npz") == big


def test_rejects_tampered_json(tmp_path, part):
    path = tmp_path / "part.json"
    part.save(path)
    doc = json.loads(path.read_text())
    # Move one row to another client: still a valid partition, but not the one that was saved.
    doc["clients"][1].append(doc["clients"][0].pop())
    path.write_text(json.dumps(doc))
    with pytest.raises(PartitionFileError, match=r"fails its content hash .* modified or corrupted"):
        Partition.load(path)


def test_rejects_tampered_spec(tmp_path, part):
    path = tmp_path / "part.json"
    part.save(path)
    doc = json.loads(path.read_text())
    doc["spec"]["params"]["alpha"] = 100.0
    path.write_text(json.dumps(doc))
    with pytest.raises(PartitionFileError, match="content hash"):
        Partition.load(path)


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_rejects_truncated_file(tmp_path, part, suffix):
    path = tmp_path / f"part{suffix}"
    part.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(PartitionFileError, match=rf"corrupt partition file '.*part\{suffix}'.*regenerate it"):
        Partition.load(path)


def test_rejects_duplicate_rows_even_with_matching_format(tmp_path, part):
    path = tmp_path / "part.json"
    part.save(path)
    doc = json.loads(path.read_text())
    doc["clients"][0].append(doc["clients"][1][0])  # one row in two clients
    path.write_text(json.dumps(doc))
    with pytest.raises(PartitionFileError, match="corrupt partition file"):
        Partition.load(path)


def test_rejects_other_json_and_missing_file(tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": "world"}))
    with pytest.raises(PartitionFileError, match="not a fednlp-bench partition"):
        Partition.load(other)
    with pytest.raises(FileNotFoundError, match="not found"):
        Partition.load(tmp_path / "missing.json")


def test_rejects_partition_for_other_data(tmp_path, news, part):
    path = tmp_path / "part.npz"
    part.save(path)
    other = news.select(range(1, len(news)))
    with pytest.raises(PartitionMismatchError, match=r"made for another dataset .*re-partition this data"):
        Partition.load(path, fingerprint=dataset_fingerprint(other))
    assert Partition.load(path, fingerprint=dataset_fingerprint(news)) == part


def test_failed_write_leaves_no_file(tmp_path, part, monkeypatch):
    target = tmp_path / "part.json"

    def broken_dump(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(storage.json, "dump", broken_dump)
    with pytest.raises(OSError, match="disk full"):
        part.save(target)
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_the_old_file(tmp_path, part, monkeypatch):
    target = tmp_path / "part.json"
    part.save(target)
    before = target.read_bytes()
    monkeypatch.setattr(storage.json, "dump", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        part.save(target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["part.json"]


def test_bad_output_paths_rejected_before_writing(tmp_path, part):
    with pytest.raises(PartitionError, match=r"must end in .json or .npz"):
        part.save(tmp_path / "part.txt")
    with pytest.raises(PartitionError, match=r"does not exist; create it first"):
        part.save(tmp_path / "nope" / "part.json")
    assert list(tmp_path.iterdir()) == []


def test_partition_is_immutable(part):
    idx = part.indices(0)
    with pytest.raises(ValueError):
        idx[0] = 5
    with pytest.raises(AttributeError):
        part.spec.seed = 1  # type: ignore[misc]
    with pytest.raises(IndexError):
        part.indices(part.num_clients)


def test_spec_regenerates_identical_partition(news, part):
    spec = part.spec.to_dict()
    again = partition_dataset(news, spec["scheme"], spec["num_clients"], seed=spec["seed"], min_size=spec["min_size"],
                              label_column="label", **spec["params"])
    assert again.content_hash == part.content_hash
    assert PartitionSpec.from_dict(part.spec.to_dict()) == part.spec


def test_client_of_row_inverts_indices(part):
    owner = part.client_of_row()
    for c in range(part.num_clients):
        assert np.all(owner[part.indices(c)] == c)
