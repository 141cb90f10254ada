"""The FedML server names a client whose endpoint is gone, however FedML noticed it (no FedML install needed).

A client killed while the server is sending it a round makes FedML's send raise
gRPC UNAVAILABLE in the server's main thread; that must end the run like a lost
upload does (EXIT_PEER_LOST, rank named, resumable), not as a bare traceback.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

from fednlp_bench.backends.fedml.messages import EXIT_PEER_LOST


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_bridge_check(tmp_path: Path, live_port: int, rank2_port: int) -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(f"""
        from fednlp_bench.backends.fedml.server import RoundBridge
        spec = {{"comm": "GRPC", "error_file": {str(tmp_path / "error.txt")!r}, "run_dir": "runs/x",
                 "hosts": [{{"rank": 0, "ip": "127.0.0.1", "port": 1}},
                           {{"rank": 1, "ip": "127.0.0.1", "port": {live_port}}},
                           {{"rank": 2, "ip": "127.0.0.1", "port": {rank2_port}}}]}}
        bridge = RoundBridge(2, 3, 60.0, spec)
        bridge.last_round = 2
        bridge.stop_if_a_client_is_lost()
        print("returned")
    """)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)


def test_a_gone_client_endpoint_stops_the_server_with_its_rank_named(tmp_path: Path) -> None:
    with socket.socket() as live:
        live.bind(("127.0.0.1", 0))
        live.listen(8)
        dead = _closed_port()
        proc = _run_bridge_check(tmp_path, live.getsockname()[1], dead)
    assert proc.returncode == EXIT_PEER_LOST, proc.stderr
    error = (tmp_path / "error.txt").read_text()
    assert f"FedML round 2: client rank 2 at 127.0.0.1:{dead} stopped accepting connections" in error, error
    assert "rank 1" not in error
    assert "--resume" in error


def test_the_server_error_stands_when_every_client_still_answers(tmp_path: Path) -> None:
    with socket.socket() as a, socket.socket() as b:
        for s in (a, b):
            s.bind(("127.0.0.1", 0))
            s.listen(8)
        proc = _run_bridge_check(tmp_path, a.getsockname()[1], b.getsockname()[1])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "returned"
    assert not (tmp_path / "error.txt").exists()
