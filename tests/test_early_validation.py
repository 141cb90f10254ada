"""Every argument, scheme parameters included, is checked before any data loads."""

from __future__ import annotations

import time

import pytest

from fednlp_bench import cli
from fednlp_bench.engine.run import sources


@pytest.fixture
def no_data(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_a: object, **_k: object) -> None:
        raise AssertionError("data was loaded before the arguments were validated")

    monkeypatch.setattr(sources, "build_task", fail)


@pytest.mark.parametrize(
    ("command", "extra", "message"),
    [
        ("run", ["--partition-alpha", "0"], "alpha=0.0 is invalid: must be > 0"),
        ("compare", ["--partition-alpha", "0"], "alpha=0.0 is invalid: must be > 0"),
        ("run", ["--partition-param", "alpah=0.5"], "has no parameter 'alpah'"),
        ("run", ["--partition-param", "classes_per_client=2"], "has no parameter 'classes_per_client'"),
    ],
)
def test_bad_scheme_parameter_fails_fast(no_data: None, capsys: pytest.CaptureFixture[str], tmp_path,
                                         command: str, extra: list[str], message: str) -> None:
    start = time.perf_counter()
    rc = cli.main([command, "--task", "classification", "--model", "tiny", "--scheme", "dirichlet_label",
                   "--clients", "10", "--runs-dir", str(tmp_path), *extra])
    elapsed = time.perf_counter() - start
    assert rc == 2
    assert message in capsys.readouterr().err
    assert elapsed < 2.0, f"validation took {elapsed:.1f} s"
    assert not any(tmp_path.iterdir())  # no partial run folder
