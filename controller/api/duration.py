"""Go duration strings (``time.ParseDuration``'s format, as ``metav1.Duration`` fields and
duration flags carry them): the one parser, for flags and API fields alike.

A duration is a sequence of decimal numbers, each with a unit: ``ms``, ``s``, ``m`` or ``h``
(``"1h30m"``, ``"90s"``, ``"1.5h"``, ``"500ms"``). Callers add their own leniencies on top
(a bare number of seconds, a whole-second result).

Failure: an empty or malformed string raises :class:`ValueError` naming the value; nothing
else is raised.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["parse_go_duration"]

_PART: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(value: str) -> float:
    """``"1h30m"`` → 5400.0 seconds (surrounding whitespace ignored); ValueError when
    ``value`` is empty or not such a duration."""
    text = value.strip()
    total, pos = 0.0, 0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _SECONDS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"{value!r} is not a duration")
    return total
