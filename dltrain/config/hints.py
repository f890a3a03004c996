"""The small texts every config message uses: did-you-mean and a value cut to fit one line."""

from __future__ import annotations

import difflib
from typing import Any


def did_you_mean(name: str, candidates: list[str] | tuple[str, ...]) -> str | None:
    """A 'did you mean ...?' hint for a misspelt name, or None when nothing is close."""
    lowered = {c.lower(): c for c in candidates}
    if name.lower() in lowered:
        return f"did you mean '{lowered[name.lower()]}'?"
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    if not close:
        close = [lowered[c] for c in difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.6)]
    if not close:
        return None
    return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"



def short(value: Any) -> str:
    """A value as the user would read it in one line (cut at 60 characters)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
