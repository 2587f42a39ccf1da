"""The README's PyTorch and ONNX round trip runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest


def test_readme_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text.split("## PyTorch and ONNX", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code.group(1), "README.md", "exec"), scope)
    assert (tmp_path / "mlp.onnx").exists() and (tmp_path / "mlp.pt").exists()
    assert type(scope["again"]).__name__ == "Sequential"
