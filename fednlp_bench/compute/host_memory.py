"""Host memory of the process that trains: freed memory is kept for reuse instead of returned to the OS.

Why (benchmarks/README.md, "Simulation overhead"; ``benchmarks/diag_engine_steps.py``):
a FedAvg round's training steps ran slower than the same steps run
centrally. Counted per step (load-independent counters), the FedAvg arm's
steps faulted in ~25,000 fresh pages each (~100 MB, zeroed by the kernel) and
the central arm's none: between clients the round frees and re-allocates
model-sized tensors (the delta of each client, the aggregate), glibc returns
the freed heap above its trim threshold to the OS and serves large tensors
with new ``mmap`` pages, so the next client's steps pay page faults for
memory the process just had. With :func:`keep_freed_memory` both arms fault
in 0 pages per step. Subnormal floats were counted too (4 of 45 million
AdamW moment values, none in weights or gradients), so flush-to-zero, which
would change results, is not applied.

The trainer applies it when it is built (``LocalTrainer``: every backend and
benchmark that trains goes through it). ``mallopt`` changes no arithmetic, so
records do not change; the record's ``hardware.host_allocator`` says whether
it was applied. The cost is that the process keeps its peak heap until it
exits (a suite worker runs one run). ``FEDNLP_HOST_MEMORY=default`` leaves
glibc as it is (for diagnostics that compare both).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
SWITCH_ENV = "FEDNLP_HOST_MEMORY"
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Serve every allocation from the heap (no per-tensor ``mmap``) and never trim it; False where not glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def configure_host_memory() -> str:
    """Apply :func:`keep_freed_memory` once per process; the value for ``hardware.host_allocator``."""
    global _applied
    if _applied is None:
        _applied = os.environ.get(SWITCH_ENV, "keep") != "default" and keep_freed_memory()
    return "glibc, freed memory kept (mallopt)" if _applied else "default"
