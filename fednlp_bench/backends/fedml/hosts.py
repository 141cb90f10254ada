"""Where each FedML rank listens, and which ranks this machine starts (``--hosts``, ``--role``, ``--rank``).

FedML's gRPC transport addresses every process by rank through a
``grpc_ipconfig`` CSV (``eid,rank,grpc_server_ip,grpc_server_port``): rank r
listens on its own ip:port and sends to the others' ip:port. On one machine
the launcher writes that file for 127.0.0.1; across machines the user names
the addresses, either as FedML's own CSV file or inline, and every machine
runs the same command with the same host list, starting only its own ranks.
This module only parses and checks; it imports nothing heavy, so bad input
fails before any process starts.
"""

from __future__ import annotations

import csv
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from fednlp_bench.execution import HOSTS_HELP, ROLES

#: rank r listens on GRPC_BASE_PORT + r unless the host list names a port.
GRPC_BASE_PORT = 18890
IPCONFIG_HEADER = ("eid", "rank", "grpc_server_ip", "grpc_server_port")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")



@dataclass(frozen=True)
class RankAddress:
    """One FedML rank's gRPC endpoint."""

    rank: int
    ip: str
    port: int

    @property
    def endpoint(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class HostList:
    """Every rank's endpoint, ranks 0..P without gaps; ``source`` says where it came from (for messages)."""

    addresses: tuple[RankAddress, ...]
    source: str = "loopback"

    @property
    def processes(self) -> int:
        """Client processes P (ranks 1..P)."""
        return len(self.addresses) - 1

    def of(self, rank: int) -> RankAddress:
        return self.addresses[rank]

    def is_loopback(self) -> bool:
        return all(_is_loopback(a.ip) for a in self.addresses)

    def write_ipconfig(self, path: str | Path) -> Path:
        """FedML's own grpc_ipconfig CSV, which its GRPC comm manager reads."""
        path = Path(path)
        with open(path, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(IPCONFIG_HEADER)
            for a in self.addresses:
                out.writerow([a.rank, a.rank, a.ip, a.port])
        return path

    def to_list(self) -> list[dict[str, object]]:
        return [{"rank": a.rank, "ip": a.ip, "port": a.port} for a in self.addresses]

    @classmethod
    def from_list(cls, rows: Iterable[dict[str, object]], source: str) -> "HostList":
        return cls(tuple(RankAddress(int(r["rank"]), str(r["ip"]), int(r["port"])) for r in rows), source)  # type: ignore[arg-type]


def loopback_hosts(processes: int, base_port: int = GRPC_BASE_PORT) -> HostList:
    """All ranks on this machine: 127.0.0.1, ports base_port + rank (the single-machine default)."""
    return HostList(tuple(RankAddress(r, "127.0.0.1", base_port + r) for r in range(processes + 1)), "loopback")


def parse_hosts(value: str | Path, base_port: int = GRPC_BASE_PORT) -> HostList:
    """``--hosts``: an existing file is FedML's grpc_ipconfig CSV; anything else is the inline list."""
    text = str(value).strip()
    if not text:
        raise ValueError(f"--hosts is empty; give {HOSTS_HELP}")
    path = Path(text).expanduser()
    if path.is_file():
        return _parse_ipconfig(path)
    if text.endswith((".csv", ".txt")) or "/" in text:
        raise ValueError(f"--hosts {text}: no such file (expected {HOSTS_HELP})")
    addresses = []
    for rank, item in enumerate(part.strip() for part in text.split(",")):
        ip, port = _split_endpoint(item, f"--hosts item {rank} ({item!r})", base_port + rank)
        addresses.append(RankAddress(rank, ip, port))
    return _checked(addresses, f"--hosts {text}")


def _parse_ipconfig(path: Path) -> HostList:
    where = f"--hosts {path}"
    with open(path, newline="") as f:
        rows = [row for row in csv.reader(f) if row and any(cell.strip() for cell in row)]
    if not rows or tuple(c.strip() for c in rows[0]) != IPCONFIG_HEADER:
        raise ValueError(f"{where}: the first line must be the header {','.join(IPCONFIG_HEADER)} (FedML's grpc_ipconfig)")
    addresses = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != 4:
            raise ValueError(f"{where} line {line}: expected 4 fields {','.join(IPCONFIG_HEADER)}, got {row}")
        _eid, rank, ip, port = (c.strip() for c in row)
        if not rank.isdigit():
            raise ValueError(f"{where} line {line}: rank {rank!r} is not a non-negative integer")
        addresses.append(RankAddress(int(rank), _checked_ip(ip, f"{where} line {line}"),
                                     _checked_port(port, f"{where} line {line}")))
    return _checked(sorted(addresses, key=lambda a: a.rank), where)


def _split_endpoint(item: str, where: str, default_port: int) -> tuple[str, int]:
    if not item:
        raise ValueError(f"{where}: empty entry; give IP[:PORT] for every rank, rank 0 first")
    ip, sep, port = item.partition(":")
    return _checked_ip(ip, where), (_checked_port(port, where) if sep else default_port)


def _checked_ip(ip: str, where: str) -> str:
    try:
        return str(ipaddress.IPv4Address(ip))
    except ValueError:
        if _HOSTNAME.match(ip) and not ip.replace(".", "").isdigit():
            return ip
    raise ValueError(f"{where}: {ip!r} is not an IPv4 address or host name")


def _checked_port(port: str, where: str) -> int:
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{where}: port {port!r} must be an integer in 1..65535")
    return int(port)


def _checked(addresses: Sequence[RankAddress], where: str) -> HostList:
    ranks = [a.rank for a in addresses]
    if len(addresses) < 2:
        raise ValueError(f"{where}: needs rank 0 (the server) and at least one client rank, got ranks {ranks}")
    if ranks != list(range(len(addresses))):
        raise ValueError(f"{where}: ranks must be 0..{len(addresses) - 1} each once, got {ranks}")
    seen: dict[tuple[str, int], int] = {}
    for a in addresses:
        if (a.ip, a.port) in seen:
            raise ValueError(f"{where}: ranks {seen[(a.ip, a.port)]} and {a.rank} both use {a.endpoint}; "
                             f"ranks on one machine need different ports")
        seen[(a.ip, a.port)] = a.rank
    return HostList(tuple(addresses), where.removeprefix("--hosts "))


def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.IPv4Address(ip).is_loopback
    except ValueError:
        return ip == "localhost"


def parse_rank_list(text: str | Sequence[int]) -> list[int]:
    """``--client-ranks 1,2`` or ``1-3`` -> [1, 2] / [1, 2, 3]."""
    if not isinstance(text, str):
        return [int(r) for r in text]
    ranks: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"--client-ranks {text!r}: {part!r} is not a rank or a range like 1-3")
        ranks.extend(range(int(lo), int(hi) + 1) if sep else [int(lo)])
    return ranks


def local_ranks(processes: int, role: str | None = None, rank: int | None = None,
                client_ranks: str | Sequence[int] | None = None) -> list[int]:
    """The ranks this machine starts: all of 0..P by default, else those --role/--rank/--client-ranks name."""
    if rank is not None:
        if role is not None or client_ranks is not None:
            raise ValueError("--rank N is a shorthand for --role server (N=0) or --role client --client-ranks N; give one")
        role, client_ranks = ("server", None) if rank == 0 else ("client", [rank])
    if role is None:
        if client_ranks is not None:
            raise ValueError("--client-ranks needs --role server|client")
        return list(range(processes + 1))
    if role not in ROLES:
        raise ValueError(f"--role {role!r}; choose one of {list(ROLES)}")
    clients = parse_rank_list(client_ranks) if client_ranks is not None else []
    if role == "client" and not clients:
        raise ValueError("--role client needs --client-ranks (which ranks, 1..P, this machine runs)")
    bad = [r for r in clients if not 1 <= r <= processes]
    if bad:
        raise ValueError(f"client rank(s) {bad} out of range: this run has client ranks 1..{processes}")
    if len(set(clients)) != len(clients):
        raise ValueError(f"--client-ranks {clients} names a rank twice")
    return ([0] if role == "server" else []) + sorted(clients)
