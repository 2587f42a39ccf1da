"""The FileCheck matcher itself: every directive passes on matching output and fails on the near miss."""

from __future__ import annotations

import pytest

from mlpc.testing.filecheck import FileCheckError, filecheck, parse_checks, run_file

OUT = """func @f(%x: f32[4]) -> (y: f32[4]) {
  %0: f32[4] = exp %x
  %1: f32[4] = tanh %0
  %2: f32[4] = add %0, %1
  return %2
}"""


def ok(checks: str) -> None:
    filecheck(OUT, checks)


def bad(checks: str, message: str = "") -> None:
    with pytest.raises(FileCheckError) as e:
        filecheck(OUT, checks)
    assert message in str(e.value)


def test_check_in_order():
    ok("// CHECK: exp\n// CHECK: add\n")
    bad("// CHECK: add\n// CHECK: exp\n", "not found in the rest of the output")


def test_check_next_and_same():
    ok("// CHECK: exp\n// CHECK-NEXT: tanh\n// CHECK-SAME: %0\n")
    bad("// CHECK: exp\n// CHECK-NEXT: add\n", "not found on the line after")
    bad("// CHECK: tanh\n// CHECK-SAME: %x\n", "same line")


def test_check_not_between_matches():
    ok("// CHECK: exp\n// CHECK-NOT: mul\n// CHECK: return\n")
    bad("// CHECK: exp\n// CHECK-NOT: tanh\n// CHECK: add\n", "forbidden text on output line 3")
    bad("// CHECK: tanh\n// CHECK-NOT: return\n", "forbidden")


def test_check_dag_any_order_distinct_lines():
    ok("// CHECK-DAG: add\n// CHECK-DAG: exp\n// CHECK: return\n")
    bad("// CHECK-DAG: = exp\n// CHECK-DAG: = exp\n", "any order")


def test_check_count():
    ok("// CHECK-COUNT-3: %0\n// CHECK: return")
    bad("// CHECK-COUNT-4: %0\n", "not found")


def test_regex_islands_and_whitespace():
    ok("// CHECK: %{{[0-9]+}}: f32[4] =    tanh\n")
    bad("// CHECK: %{{[a-z]+}}: f32[4] = tanh\n")


def test_variables_capture_and_use():
    ok("// CHECK: %[[E:[0-9]+]]: f32[4] = exp\n// CHECK: tanh %[[E]]\n// CHECK: add %[[E]]")
    bad("// CHECK: %[[T:[0-9]+]]: f32[4] = tanh\n// CHECK: add %[[T]], ", "not found")
    bad("// CHECK: add %[[NEVER]]\n", "used before it was captured")


def test_prefixes_are_separate():
    text = "// CHECK: exp\n// FOO: tanh\n// FOO-NOT: mul\n"
    assert [c.kind for c in parse_checks(text, "FOO")] == ["CHECK", "CHECK-NOT"]
    assert [c.pattern.strip() for c in parse_checks(text)] == ["exp"]


def test_no_checks_is_an_error():
    bad("// nothing here\n", "no CHECK lines")


def test_run_file_needs_run_lines_and_reports_exit_codes(tmp_path):
    f = tmp_path / "t.mlpc"
    f.write_text("// CHECK: x\n")
    with pytest.raises(FileCheckError, match="no RUN line"):
        run_file(str(f))
    f.write_text("// RUN: mlpc opt %s\n// CHECK: exp\nfunc @f(%x: f32[]) -> (y: f32[]) {\n  %0: f32[] = exp %x\n"
                 "  return %0\n}\n")
    run_file(str(f))
    f.write_text("// RUN: not mlpc opt %s\n// CHECK: exp\nfunc @f(%x: f32[]) -> (y: f32[]) {\n  %0: f32[] = exp %x\n"
                 "  return %0\n}\n")
    with pytest.raises(FileCheckError, match="expected a non-zero exit"):
        run_file(str(f))
