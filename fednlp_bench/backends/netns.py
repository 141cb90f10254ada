"""Several "hosts" on one Linux machine: network namespaces joined by veth links to one bridge (root only).

Why: a multi-machine FedML run (``--hosts``, ``--role``) must be testable and
measurable without several machines. Each namespace has its own network
stack, so processes in different namespaces share no loopback and every
message crosses a link, which ``tc netem`` can delay where the kernel has it.

Addresses come from 198.18.0.0/15 only (RFC 2544, reserved for network
benchmarks), so nothing here can collide with a real network. The namespace
of the first host holds the bridge; each other host gets a veth pair whose
outer end is a bridge port. Nothing is created in the machine's own
namespace, and :meth:`NetnsLab.close` removes every namespace (their links go
with them) and kills any process still inside them, also after a failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path
from typing import IO, Sequence

#: RFC 2544 benchmark range; the lab takes one /24 of it.
BENCH_PREFIX = "198.18"
#: Inside each non-first namespace the link device is called this.
LINK_DEVICE = "eth0"


def _ip(*args: str, ns: str | None = None, timeout: float = 30) -> str:
    cmd = ["ip", *(["-n", ns] if ns else []), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed: {done.stderr.strip()}")
    return done.stdout


def netns_unavailable() -> str | None:
    """Why namespaces cannot be made here (no iproute2, not root), or None when they can."""
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is missing: apt-get install -y iproute2"
    name = f"fnbprobe{uuid.uuid4().hex[:6]}"
    done = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        return f"`ip netns add` is not permitted here ({done.stderr.strip()}); it needs root"
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
    return None


class NetnsLab:
    """``hosts`` namespaces on one bridge; ``addresses[i]`` is host i's address (``198.18.N.(i+1)``)."""

    def __init__(self, hosts: int = 3, subnet: int | None = None) -> None:
        if not 2 <= hosts <= 250:
            raise ValueError(f"hosts={hosts} must be between 2 and 250")
        tag = uuid.uuid4().hex[:6]
        self.names = [f"fnb{tag}h{i}" for i in range(hosts)]
        third = subnet if subnet is not None else int(tag[:2], 16) % 200 + 10
        if not 0 <= third <= 255:
            raise ValueError(f"subnet={subnet} must be in 0..255 (the lab uses {BENCH_PREFIX}.SUBNET.0/24)")
        self.addresses = [f"{BENCH_PREFIX}.{third}.{i + 1}" for i in range(hosts)]
        self.procs: list[subprocess.Popen[bytes]] = []
        self._made: list[str] = []
        self._logs: list[IO[bytes]] = []

    # ------------------------------------------------------------------ set-up / tear-down
    def __enter__(self) -> "NetnsLab":
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        for name in self.names:
            _ip("netns", "add", name)
            self._made.append(name)
            _ip("link", "set", "lo", "up", ns=name)
        hub = self.names[0]
        _ip("link", "add", "br0", "type", "bridge", ns=hub)
        _ip("addr", "add", f"{self.addresses[0]}/24", "dev", "br0", ns=hub)
        _ip("link", "set", "br0", "up", ns=hub)
        for i, name in enumerate(self.names[1:], start=1):
            port = f"port{i}"
            _ip("link", "add", port, "type", "veth", "peer", "name", LINK_DEVICE, "netns", name, ns=hub)
            _ip("link", "set", port, "master", "br0", ns=hub)
            _ip("link", "set", port, "up", ns=hub)
            _ip("addr", "add", f"{self.addresses[i]}/24", "dev", LINK_DEVICE, ns=name)
            _ip("link", "set", LINK_DEVICE, "up", ns=name)

    def close(self) -> None:
        """Kill what runs inside the lab, delete its namespaces (and links); check none is left."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        for name in self._made:
            pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, timeout=30).stdout
            for pid in pids.split():  # only processes inside this lab's own namespaces
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        for log in self._logs:
            log.close()
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout
        stuck = [name for name in self._made if name in left]
        self._made = []
        if stuck:
            raise RuntimeError(f"network namespaces left behind: {stuck}; remove them with `ip netns del NAME`")

    # ------------------------------------------------------------------ use
    def start(self, host: int, argv: Sequence[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Run ``argv`` inside host ``host``'s namespace (what a user types on that machine), output to ``log``."""
        out = open(log, "wb")
        self._logs.append(out)
        proc = subprocess.Popen(["ip", "netns", "exec", self.names[host], *argv], stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        self.procs.append(proc)
        return proc

    def delay(self, host: int, ms: int) -> None:
        """Delay every packet host ``host`` sends by ``ms`` (tc netem; needs the kernel's sch_netem)."""
        if host == 0:
            raise ValueError("host 0 holds the bridge; delay a client host's link (1..)")
        done = subprocess.run(["tc", "-n", self.names[host], "qdisc", "add", "dev", LINK_DEVICE, "root", "netem",
                               "delay", f"{int(ms)}ms"], capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise NetemUnavailable(f"`tc qdisc add dev {LINK_DEVICE} root netem delay {ms}ms` failed: "
                                   f"{done.stderr.strip()} (this kernel lacks the sch_netem module)")


class NetemUnavailable(RuntimeError):
    """``tc netem`` is not available on this kernel."""
