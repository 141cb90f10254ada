"""The one "Did you mean ...?" helper behind every unknown-name error.

It lives in a leaf module (standard library only) so that any module, however
low in the import graph, can use it without importing the code it validates.
"""

from __future__ import annotations

import difflib
from typing import Iterable


def closest_hint(name: object, valid: Iterable[str]) -> str:
    """' Did you mean 'x'?' for the closest valid name, or '' (shared by every 'unknown key' error)."""
    close = difflib.get_close_matches(str(name), list(valid), n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""
