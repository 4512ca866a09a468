"""Asserting an error's whole message, not a fragment of it."""

from __future__ import annotations

import re

import pytest


def raises_whole(kind: type[BaseException], message: str):
    """``pytest.raises(kind)`` whose message must be exactly ``message`` (no regex in it)."""
    return pytest.raises(kind, match="^" + re.escape(message) + "$")
