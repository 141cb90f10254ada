"""Offline behaviour: an unreachable hub is detected once and reported at once, without retries."""

from __future__ import annotations

import socket
import time

import pytest

from fednlp_bench import hub
from fednlp_bench.paths import DataSourceError
from fednlp_bench.tasks.sources import load_hub


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """No offline switch, and every TCP connect fails; records the attempts."""
    calls: list[tuple] = []

    def refuse(address: tuple, timeout: float | None = None) -> socket.socket:
        calls.append(address)
        raise OSError("network is unreachable")

    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(hub.socket, "create_connection", refuse)
    hub.hub_status.cache_clear()
    yield calls
    hub.hub_status.cache_clear()


def test_unreachable_hub_fails_at_once_and_is_probed_once(no_network: list[tuple]) -> None:
    start = time.perf_counter()
    for _ in range(3):
        with pytest.raises(DataSourceError, match=r"hub dataset 'no_such_set' was not tried.*not reachable"):
            load_hub("no_such_set", ["$FEDNLP_DATA_DIR/x"])
    assert time.perf_counter() - start < 1.0
    assert len(no_network) == 1  # one probe per process, not one per load


def test_offline_switch_is_reported_without_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.hub_status.cache_clear()
    monkeypatch.setattr(hub.socket, "create_connection", lambda *a, **k: pytest.fail("probed despite offline switch"))
    assert hub.hub_status() == (False, "offline mode (HF_HUB_OFFLINE=1)")
    assert hub.unreachable_reason() is None  # the HF libraries answer from their cache themselves
    hub.hub_status.cache_clear()


def test_unknown_model_name_fails_at_once_offline(no_network: list[tuple]) -> None:
    from fednlp_bench.tasks.models import _source

    with pytest.raises(ValueError, match=r"unknown model 'someone/nonexistent'.*not reachable"):
        _source("someone/nonexistent")
