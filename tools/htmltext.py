"""Escaped text and small HTML pieces for self-contained report pages built from untrusted JSON.

Everything that came from a run (captions, LLM answers, file names) goes through `esc`, which also makes
invisible or reordering characters visible; the table and list helpers take cells that are already escaped.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Sequence
from typing import Any

MAX_TEXT = 20_000  # characters of one value shown; a runaway prompt or answer must not make the page unusable
# Characters that would be invisible or reorder text on screen (controls, zero-width, bidi overrides) or cannot be
# written as UTF-8 (lone surrogates): shown as escapes, so untrusted text reads as what it is.
_HIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff]")


def _show_hidden(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def esc(value: Any) -> str:
    """Any value as escaped HTML text: strings as they are, other values as compact JSON."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    if len(text) > MAX_TEXT:
        text = f"{text[:MAX_TEXT]} … ({len(text) - MAX_TEXT} more characters)"
    return html.escape(_HIDDEN.sub(_show_hidden, text), quote=True)


def pre(value: Any) -> str:
    """A value in a <pre>: strings verbatim, anything else as indented JSON."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2, default=str)
    return f"<pre>{esc(text)}</pre>"


def num(value: Any) -> float | None:
    """A finite number from untrusted JSON, else None (bools are not numbers here)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def fmt(value: Any, digits: int = 3) -> str:
    """A number for reading: integers as such, others to `digits` decimals without trailing zeros (tiny ones in
    scientific notation); the escaped value when it is not a number, "–" when it is absent."""
    n = num(value)
    if n is None:
        return esc(value) if value is not None else "–"
    if n == int(n) and abs(n) < 1e15:
        return str(int(n))
    if abs(n) < 10**-digits:
        return f"{n:.{digits}g}"
    return f"{n:.{digits}f}".rstrip("0").rstrip(".")


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def table(header: Sequence[str], rows: Sequence[Sequence[str]], css: str = "") -> str:
    """A table from already-escaped cells."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def empty(text: str) -> str:
    return f'<p class="empty">{esc(text)}</p>'
