"""A small FileCheck: CHECK / -NEXT / -SAME / -NOT / -DAG / -LABEL / -COUNT-n lines (any prefix) against output."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from typing import NoReturn

_RUN = re.compile(r"//\s*RUN:(.*)$")


def _directive(prefix: str) -> re.Pattern[str]:
    return re.compile(rf"//\s*({re.escape(prefix)}(?:-NEXT|-SAME|-NOT|-DAG|-LABEL|-COUNT-\d+)?):(.*)$")


@dataclass
class Check:
    kind: str
    pattern: str
    line: int


class FileCheckError(AssertionError):
    """A CHECK line did not match; the message shows the pattern and where matching stopped."""


_PIECE = re.compile(r"(\{\{.*?\}\}|\[\[[A-Za-z_][A-Za-z0-9_]*(?::.*?)?\]\])")


def _regex(pattern: str, variables: dict[str, str] | None = None) -> re.Pattern[str]:
    """Literal text with {{regex}} islands, [[NAME:regex]] captures and [[NAME]] uses, like LLVM FileCheck."""
    out = []
    for piece in _PIECE.split(pattern.strip()):
        if piece.startswith("{{") and piece.endswith("}}"):
            out.append(f"(?:{piece[2:-2]})")
        elif piece.startswith("[[") and piece.endswith("]]"):
            name, sep, rx = piece[2:-2].partition(":")
            if sep:
                out.append(f"(?P<{name}>{rx})")
            elif variables is None or name not in variables:
                raise FileCheckError(f"variable [[{name}]] used before it was captured")
            else:
                out.append(re.escape(variables[name]))
        else:  # like FileCheck without --strict-whitespace: a run of blanks matches any run of blanks
            out.append(r"[ \t]+".join(re.escape(w) for w in re.split(r"[ \t]+", piece)))
    return re.compile("".join(out))


def parse_checks(text: str, prefix: str = "CHECK") -> list[Check]:
    """The check lines of one prefix (`// CHECK:` by default, `// ERR-NOT:` with prefix ERR); kinds are
    normalized to CHECK, CHECK-NEXT, ... whatever the prefix."""
    rx = _directive(prefix)
    checks = []
    for no, line in enumerate(text.splitlines(), 1):
        m = rx.search(line)
        if m:
            kind = "CHECK" + m.group(1)[len(prefix):]
            if kind.startswith("CHECK-COUNT-"):  # N matches in a row, each after the one before
                checks += [Check("CHECK", m.group(2), no) for _ in range(int(kind.rsplit("-", 1)[1]))]
            else:
                checks.append(Check(kind, m.group(2), no))
    return checks


def filecheck(output: str, checks: list[Check] | str, prefix: str = "CHECK") -> None:
    """Raise FileCheckError unless `output` satisfies the checks in order.

    CHECK-DAG lines next to each other match distinct lines in any order after the previous match;
    the next check then starts after the furthest of them.
    """
    if isinstance(checks, str):
        checks = parse_checks(checks, prefix)
    if not checks:
        raise FileCheckError("no CHECK lines given: a test that checks nothing proves nothing")
    lines = output.splitlines()
    pos = 0  # next line index to search from
    last = -1  # line index of the last positive match
    col = 0  # column after the last match, for CHECK-SAME
    variables: dict[str, str] = {}
    pending_not: list[Check] = []

    def fail(c: Check, msg: str) -> NoReturn:
        context = "\n".join(f"  {i + 1:4}: {lines[i]}" for i in range(max(0, pos - 2), min(len(lines), pos + 3)))
        raise FileCheckError(f"check line {c.line}: {c.kind}: {c.pattern.strip()!r} {msg}\nnear output:\n{context}")

    def check_nots(upto: int) -> None:
        for n in pending_not:
            rx = _regex(n.pattern, variables)
            for i in range(max(last + 1, 0), upto):
                if rx.search(lines[i]):
                    fail(n, f"matched forbidden text on output line {i + 1}: {lines[i]!r}")
        pending_not.clear()

    def accept(found: int, m: re.Match[str]) -> None:
        nonlocal last, pos, col
        variables.update({k: v for k, v in m.groupdict().items() if v is not None})
        if found >= last:
            last, pos, col = found, found + 1, m.end()

    dag_used: set[int] = set()
    dag_start = 0
    for n, c in enumerate(checks):
        if c.kind == "CHECK-NOT":
            pending_not.append(c)
            continue
        rx = _regex(c.pattern, variables)
        if c.kind == "CHECK-SAME":
            m = rx.search(lines[last], col) if last >= 0 else None
            if m is None:
                fail(c, "not found on the same line as the previous match")
            variables.update({k: v for k, v in m.groupdict().items() if v is not None})
            col = m.end()
            continue
        if c.kind == "CHECK-DAG":
            if n == 0 or checks[n - 1].kind != "CHECK-DAG":
                dag_used, dag_start = set(), pos
            hits = ((i, rx.search(lines[i])) for i in range(dag_start, len(lines)) if i not in dag_used)
            found, m = next(((i, mm) for i, mm in hits if mm), (-1, None))
            if m is None:
                fail(c, "not found (in any order) in the rest of the output")
            dag_used.add(found)
            check_nots(found)
            accept(found, m)
            continue
        if c.kind == "CHECK-NEXT":
            found = last + 1
            m = rx.search(lines[found]) if found < len(lines) else None
            if m is None:
                fail(c, "not found on the line after the previous match")
        else:
            hits = ((i, rx.search(lines[i])) for i in range(pos, len(lines)))
            found, m = next(((i, mm) for i, mm in hits if mm), (-1, None))
            if m is None:
                fail(c, "not found in the rest of the output")
        check_nots(found)
        accept(found, m)
    if pending_not:
        check_nots(len(lines))


def run_file(path: str) -> None:
    """Run each `// RUN:` line of a test file and FileCheck its output, like LLVM's lit.

    `// RUN: mlpc opt %s -p dce | FileCheck %s --check-prefix=DCE`: %s is the file, %S its folder,
    `mlpc` this Python's CLI; the FileCheck part is optional (prefix CHECK). `not mlpc ...` expects a
    non-zero exit, and `2>&1` checks standard error together with standard output.
    """
    import os

    with open(path, encoding="utf-8") as f:
        text = f.read()
    runs = [m.group(1).strip() for line in text.splitlines() if (m := _RUN.search(line))]
    if not runs:
        raise FileCheckError(f"{path} has no RUN line")
    for run in runs:
        cmd, _, check = run.partition("|")
        prefix = "CHECK"
        m = re.search(r"--check-prefix[= ](\S+)", check)
        if m:
            prefix = m.group(1)
        words = [a.replace("%s", path).replace("%S", os.path.dirname(os.path.abspath(path)))
                 for a in shlex.split(cmd)]
        expect_fail = bool(words) and words[0] == "not"
        merge = "2>&1" in words
        argv = [w for w in words[1 if expect_fail else 0:] if w != "2>&1"]
        if argv and argv[0] == "mlpc":
            argv = [sys.executable, "-m", "mlpc.cli"] + argv[1:]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        if (proc.returncode != 0) != expect_fail:
            want = "a non-zero exit" if expect_fail else "exit 0"
            raise FileCheckError(f"{path}: `{run}` exited {proc.returncode}, expected {want}:\n{proc.stderr}")
        checks = parse_checks(text, prefix)
        if not checks:
            raise FileCheckError(f"{path}: no {prefix}: lines for `{run}`")
        try:
            filecheck(proc.stdout + (proc.stderr if merge else ""), checks)
        except FileCheckError as e:
            raise FileCheckError(f"{path}: `{run.strip()}`: {e}") from None
