"""Test ids that are the same in every process (pytest-xdist's workers must agree on them)."""

from __future__ import annotations

import re


def stable_id(value, width: int = 60) -> str:
    """``str(value)`` without memory addresses (``<function f at 0x7f...>`` -> ``<function f>``)."""
    return re.sub(r" at 0x[0-9a-f]+", "", str(value))[:width]
