"""The one JSONL reader (ingest's sources, training's pairs, the labelled query files): each non-blank line's
JSON value with its line number, or why the line is not JSON, guarded against what ``json`` raises beyond
``JSONDecodeError`` (a number over Python's digit limit, nesting deeper than the recursion limit)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class JsonLine:
    number: int  # 1-based
    value: Any = None
    error: str | None = None  # why the line is not JSON, e.g. "Expecting value"; None for a value
    column: int | None = None  # where the JSON breaks, when json says


def json_lines(text: str) -> Iterator[JsonLine]:
    """Each non-blank line of ``text``, parsed. Lines are split on "\\n" only: ``str.splitlines()`` also breaks
    at U+2028 and friends, which JSON strings may hold."""
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield JsonLine(number, json.loads(line))
        except json.JSONDecodeError as exc:
            yield JsonLine(number, error=exc.msg, column=exc.colno)
        except (ValueError, RecursionError) as exc:
            # json raises these (not JSONDecodeError) for a number over Python's digit limit, or deep nesting.
            yield JsonLine(
                number,
                error="nested too deeply" if isinstance(exc, RecursionError) else "a number with too many digits",
            )
