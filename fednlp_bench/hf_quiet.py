"""Quiet Hugging Face loads: their load reports and weight-loading bars are noise in logs we already narrate.

Shared by the tasks (model heads) and the partitioners (the sentence embedder
of feature_cluster), which is why it lives outside both.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report and weight-loading bars for loads whose outcome we report ourselves.

    A pretrained encoder under a new task head always "misses" the head's
    weights; transformers prints that as a multi-line LOAD REPORT with ANSI
    colour codes, which reads as an error in every log. The expected part is
    announced once by :func:`announce_new_weights`; real errors still raise.
    """
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
