"""HTTP byte ranges (RFC 9110 section 14) for playback: one range, as browsers ask for media."""

from __future__ import annotations

import re

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class Unsatisfiable(ValueError):
    """The Range header cannot be served (malformed, several ranges, or outside the file): 416."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte asked for, or None for the whole file (no Range header)."""
    if header is None:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        raise Unsatisfiable("only one range, as bytes=first-last, bytes=first- or bytes=-suffix")
    first, last = match.groups()
    if not first and not last:
        raise Unsatisfiable("a range needs a first byte or a suffix length")
    if not first:  # the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            raise Unsatisfiable("an empty suffix")
        return max(size - length, 0), size - 1
    start = int(first)
    end = size - 1 if not last else min(int(last), size - 1)
    if start >= size or (last and int(last) < start):
        raise Unsatisfiable(f"the file has {size} bytes")
    return start, end
