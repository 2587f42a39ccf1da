"""What changed between two stages: a side-by-side line diff and a count of ops added and removed."""

from __future__ import annotations

import difflib
import re
from collections import Counter
from html import escape

_LOC = re.compile(r' loc\("(?:[^"\\]|\\.)*"\)')
_OP = re.compile(r"^\s+%[^=]+=\s+([a-z_][a-z0-9_]*)")
_NUMBERED = re.compile(r"%(\d+)(?![\w.])")
_DEF = re.compile(r"%(\d+):")


_COMMENT = re.compile(r"\s+//.*$")


def _mask(line: str) -> str:
    """A line with numbered values masked and trailing comments dropped, so renumbering after an insertion
    or a new annotation (the fused stage's kernel names) does not count as a change."""
    return _NUMBERED.sub("%#", _COMMENT.sub("", line))  # %0.weight (a parameter) is a name, not a number


def strip_locs(text: str) -> str:
    return _LOC.sub("", text)


def op_counts(text: str) -> Counter[str]:
    """Op names in a textual IR function (lines `%a: T = name ...`)."""
    return Counter(m.group(1) for line in text.splitlines() if (m := _OP.match(line)))


def summary(before: str, after: str) -> str:
    """One line: `+3 matmul, -1 full` (or `no op changes`)."""
    a, b = op_counts(before), op_counts(after)
    parts = [f"+{b[k] - a[k]} {k}" for k in sorted(b) if b[k] > a[k]]
    parts += [f"-{a[k] - b[k]} {k}" for k in sorted(a) if a[k] > b[k]]
    if not parts:
        return "no op changes" if strip_locs(before) != strip_locs(after) or not before else "unchanged"
    return ", ".join(parts)


def side_by_side_html(before: str, after: str, context: int | None = None) -> str:
    """A two-column HTML table: deleted lines red on the left, inserted green on the right, lines that
    differ only by a consistent renumbering of values grey, lines that only gained a comment blue."""
    a, b = strip_locs(before).splitlines(), strip_locs(after).splitlines()
    rename: dict[str, str] = {}

    def pair(x: str, y: str) -> str:
        dx, dy = _DEF.findall(x), _DEF.findall(y)
        if len(dx) == len(dy):
            rename.update(zip(dx, dy))
        if x == y:
            return _row("eq", x, "eq", y)
        renamed = _NUMBERED.sub(lambda m: "%" + rename.get(m.group(1), "?"), x)
        if renamed == y:
            return _row("ren", x, "ren", y)
        if _COMMENT.sub("", renamed) == _COMMENT.sub("", y):
            return _row("ann", x, "ann", y)
        return _row("del", x, "ins", y)

    rows = []
    matcher = difflib.SequenceMatcher(None, [_mask(x) for x in a], [_mask(y) for y in b], autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        left, right = a[i1:i2], b[j1:j2]
        if tag == "equal":
            if context is not None and len(left) > 2 * context + 1:
                rows += [pair(x, y) for x, y in zip(left[:context], right[:context])]
                rows.append(f'<tr class="skip"><td colspan="2">… {len(left) - 2 * context} unchanged lines …</td></tr>')
                for x, y in zip(left[context:-context], right[context:-context]):
                    pair(x, y)  # keep the renaming map up to date
                left, right = left[-context:], right[-context:]
            rows += [pair(x, y) for x, y in zip(left, right)]
            continue
        for n in range(max(len(left), len(right))):
            lc, x = ("del", left[n]) if n < len(left) else ("gap", "")
            rc, y = ("ins", right[n]) if n < len(right) else ("gap", "")
            rows.append(_row(lc, x, rc, y))
    return '<table class="diff"><colgroup><col><col></colgroup>' + "".join(rows) + "</table>"


def _row(lc: str, left: str, rc: str, right: str) -> str:
    return f'<tr><td class="{lc}">{escape(left)}</td><td class="{rc}">{escape(right)}</td></tr>'
