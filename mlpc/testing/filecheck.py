"""A small FileCheck: match CHECK / CHECK-NEXT / CHECK-SAME / CHECK-NOT / CHECK-LABEL lines against output."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass

_DIRECTIVE = re.compile(r"//\s*(CHECK(?:-NEXT|-SAME|-NOT|-LABEL)?):(.*)$")
_RUN = re.compile(r"//\s*RUN:(.*)$")


@dataclass
class Check:
    kind: str
    pattern: str
    line: int


class FileCheckError(AssertionError):
    """A CHECK line did not match; the message shows the pattern and where matching stopped."""


def _regex(pattern: str) -> re.Pattern[str]:
    """Literal text with {{regex}} islands, like LLVM FileCheck."""
    parts = re.split(r"\{\{(.*?)\}\}", pattern.strip())
    out = "".join(re.escape(p) if i % 2 == 0 else f"(?:{p})" for i, p in enumerate(parts))
    return re.compile(out)


def parse_checks(text: str) -> list[Check]:
    checks = []
    for no, line in enumerate(text.splitlines(), 1):
        m = _DIRECTIVE.search(line)
        if m:
            checks.append(Check(m.group(1), m.group(2), no))
    return checks


def filecheck(output: str, checks: list[Check] | str) -> None:
    """Raise FileCheckError unless `output` satisfies the checks in order."""
    if isinstance(checks, str):
        checks = parse_checks(checks)
    if not checks:
        raise FileCheckError("no CHECK lines given: a test that checks nothing proves nothing")
    lines = output.splitlines()
    pos = 0  # next line index to search from
    last = -1  # line index of the last positive match
    col = 0  # column after the last match, for CHECK-SAME
    pending_not: list[Check] = []

    def fail(c: Check, msg: str) -> None:
        context = "\n".join(f"  {i + 1:4}: {lines[i]}" for i in range(max(0, pos - 2), min(len(lines), pos + 3)))
        raise FileCheckError(f"check line {c.line}: {c.kind}: {c.pattern.strip()!r} {msg}\nnear output:\n{context}")

    def check_nots(upto: int, c: Check) -> None:
        for n in pending_not:
            rx = _regex(n.pattern)
            for i in range(max(last, 0), upto):
                if rx.search(lines[i]):
                    fail(n, f"matched forbidden text on output line {i + 1}: {lines[i]!r}")
        pending_not.clear()

    for c in checks:
        rx = _regex(c.pattern)
        if c.kind == "CHECK-NOT":
            pending_not.append(c)
            continue
        if c.kind == "CHECK-SAME":
            m = rx.search(lines[last], col) if last >= 0 else None
            if m is None:
                fail(c, "not found on the same line as the previous match")
            col = m.end()  # type: ignore[union-attr]
            continue
        if c.kind == "CHECK-NEXT":
            i = last + 1
            if i >= len(lines) or not rx.search(lines[i]):
                fail(c, "not found on the line after the previous match")
            found = i
        else:
            found = next((i for i in range(pos, len(lines)) if rx.search(lines[i])), -1)
            if found < 0:
                fail(c, "not found in the rest of the output")
        check_nots(found, c)
        m2 = rx.search(lines[found])
        col = m2.end() if m2 else 0
        last, pos = found, found + 1
    if pending_not:
        check_nots(len(lines), pending_not[0])


def run_file(path: str) -> None:
    """Run each `// RUN: cmd` line of a test file (%s = the file, `mlpc` = this Python's CLI), FileCheck it."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    runs = [m.group(1).strip() for line in text.splitlines() if (m := _RUN.search(line))]
    if not runs:
        raise FileCheckError(f"{path} has no RUN line")
    for cmd in runs:
        cmd = cmd.split("|")[0].strip()  # `| FileCheck %s` is implied
        argv = [a.replace("%s", path) for a in shlex.split(cmd)]
        if argv and argv[0] == "mlpc":
            argv = [sys.executable, "-m", "mlpc.cli"] + argv[1:]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise FileCheckError(f"{path}: `{cmd}` exited {proc.returncode}:\n{proc.stderr}")
        filecheck(proc.stdout, text)
