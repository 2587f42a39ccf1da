"""Runs every tests/filecheck/*.mlpc file: each `// RUN:` line, FileChecked against its CHECK lines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mlpc.parser import parse
from mlpc.printer import print_graph
from mlpc.testing.filecheck import FileCheckError, filecheck, parse_checks, run_file

HERE = Path(__file__).parent
FILES = sorted(HERE.glob("*.mlpc"))
OPT_RUN = re.compile(r"//\s*RUN:\s*mlpc opt %s -p \S+.*?\|\s*FileCheck %s(?:\s+--check-prefix[= ](\S+))?")


def test_the_suite_covers_every_pass_family():
    names = {f.stem for f in FILES}
    assert {"autodiff", "sgd", "momentum", "adam", "dce", "cse", "fold", "algebraic", "simplify", "errors",
            "dump"} <= names


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_file(path: Path) -> None:
    run_file(str(path))


PASS_FILES = [f for f in FILES if OPT_RUN.search(f.read_text())]


def test_pass_files_are_found():
    assert len(PASS_FILES) >= 9


@pytest.mark.parametrize("path", PASS_FILES, ids=[f.stem for f in PASS_FILES])
def test_checks_fail_without_the_pass(path: Path) -> None:
    """The CHECK lines of every `mlpc opt %s -p ...` run must reject the untransformed input, so each
    test really observes what its pipeline did."""
    text = path.read_text()
    prefixes = [m.group(1) or "CHECK" for m in OPT_RUN.finditer(text)]
    unchanged = print_graph(parse(text))
    for prefix in prefixes:
        with pytest.raises(FileCheckError):
            filecheck(unchanged, parse_checks(text, prefix))
