"""Parse errors name the line and column and say what was wrong."""

import pytest

from mlpc.errors import ParseError
from mlpc.parser import parse

GOOD = """func @f(%x: f32[2,3], param %w: f32[3,4]) -> (out: f32[2,4]) {
  %0: f32[2,4] = matmul %x, %w
  return %0
}
"""


def test_good_parses():
    assert parse(GOOD).ops[0].name == "matmul"


@pytest.mark.parametrize("text, line, col, words", [
    (GOOD.replace("matmul", "matmull"), 2, 18, "unknown op 'matmull'"),
    (GOOD.replace("%w\n", "%v\n"), 2, 29, "undefined value %v"),
    (GOOD.replace("%0: f32[2,4] =", "%0: f32[2,5] ="), 2, 3, "operands give"),
    (GOOD.replace("f32[3,4]) ->", "f33[3,4]) ->"), 1, 33, "unknown dtype 'f33'"),
    (GOOD.replace("  return %0\n", ""), 3, 1, "expected a result %name or 'return'"),
    (GOOD.replace("%x: f32[2,3]", "%x: f32[2,-3]"), 1, 19, "dimension"),
    (GOOD + "junk", 5, 1, "unexpected 'junk'"),
    (GOOD.replace("matmul %x, %w", "matmul %x, %w {transpose_c = true}"), 2, 18, "transpose_c"),
    (GOOD.replace("(out: f32[2,4])", "(out: f32[2,5])"), 3, 3, "declared f32[2,5]"),
    ("func @f() -> () {\n  return\n", 3, 1, "expected '}'"),
    ("func @f(%x: f32[2], %x: f32[2]) -> () {\n  return\n}", 1, 21, "defined twice"),
    ("func @f(%x: f32[2]) -> () {\n  %0: f32[2] = neg %x {}\n  %0: f32[2] = neg %x\n  return\n}", 3, 3,
     "defined twice"),
    ("func @f() -> () { ` }", 1, 19, "unexpected character"),
])
def test_parse_error_names_line_and_column(text, line, col, words):
    with pytest.raises(ParseError) as e:
        parse(text)
    assert (e.value.line, e.value.column) == (line, col), str(e.value)
    assert words in str(e.value)
    assert str(e.value).startswith(f"line {line}, column {col}:")
