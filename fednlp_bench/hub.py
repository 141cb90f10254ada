"""Is the Hugging Face hub reachable? Asked once per process, so offline machines fail at once.

Without this, a dataset or model name that does not resolve locally went to
``datasets``/``huggingface_hub``, which retry with back-off for ~25 s and
print a warning per retry before giving up. One short TCP connect (or the
standard ``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE`` switches) answers the same
question in at most :data:`CONNECT_TIMEOUT_S` seconds, and the answer is cached.
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from urllib.parse import urlparse

CONNECT_TIMEOUT_S = 3.0
_OFFLINE_SWITCHES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def offline_switch() -> str | None:
    """The environment variable that declares offline mode, if one is set to a true value."""
    for name in _OFFLINE_SWITCHES:
        if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on"):
            return name
    return None


@lru_cache(maxsize=1)
def hub_status() -> tuple[bool, str]:
    """``(reachable, why)``, computed once per process."""
    switch = offline_switch()
    if switch:
        return False, f"offline mode ({switch}=1)"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            return True, f"{host}:{port} reachable"
    except OSError as err:
        return False, f"{host}:{port} unreachable ({type(err).__name__}: {err})"


def hub_reachable() -> bool:
    return hub_status()[0]


def unreachable_reason() -> str | None:
    """Why a hub call would be pointless now, or None.

    With an offline switch set, the HF libraries themselves answer at once
    (from their local cache, without retries), so they are still asked; only a
    network failure without a switch is reported here, before the libraries
    would spend ~25 s on retries.
    """
    if offline_switch():
        return None
    reachable, why = hub_status()
    return None if reachable else (
        f"the Hugging Face hub is not reachable: {why}; set HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 to use "
        f"copies cached by datasets/transformers"
    )
