"""Pass registry, pipeline text (`autodiff,adam{lr=1e-3},simplify`), and the pass manager."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, TextIO

from mlpc.errors import MlpcError, ParseError
from mlpc.ir import Graph, clone
from mlpc.printer import print_graph
from mlpc.verifier import verify

PassFn = Callable[..., Graph]
_PASSES: dict[str, tuple[PassFn, str]] = {}


def register_pass(name: str, doc: str = "") -> Callable[[PassFn], PassFn]:
    def deco(fn: PassFn) -> PassFn:
        if name in _PASSES:
            raise ValueError(f"pass {name!r} registered twice")
        _PASSES[name] = (fn, doc or (fn.__doc__ or "").strip().splitlines()[0])
        return fn
    return deco


def _load_builtin() -> None:
    """Import every module that registers passes (an import error is a bug and propagates)."""
    import passes.autodiff  # noqa: F401
    import passes.distribute  # noqa: F401
    import passes.fusion  # noqa: F401
    import passes.gpu  # noqa: F401
    import passes.guard  # noqa: F401
    import passes.memory  # noqa: F401
    import passes.newton  # noqa: F401
    import passes.optimizer  # noqa: F401
    import passes.probe  # noqa: F401
    import passes.simplify  # noqa: F401


def get_pass(name: str) -> PassFn:
    _load_builtin()
    if name not in _PASSES:
        raise MlpcError(f"unknown pass {name!r}; registered: {', '.join(sorted(_PASSES))}")
    return _PASSES[name][0]


def registered_passes() -> dict[str, str]:
    _load_builtin()
    return {k: doc for k, (_, doc) in sorted(_PASSES.items())}


@dataclass
class PassStep:
    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        if not self.options:
            return self.name
        from mlpc.printer import format_attr

        return f"{self.name}{{{', '.join(f'{k}={format_attr(v)}' for k, v in self.options.items())}}}"


def parse_pipeline(text: str) -> list[PassStep]:
    """Parse `a,b{k=v, k2=[1, 2]},c` into pass steps (option values use the IR attribute syntax)."""
    from mlpc.parser import _Parser

    p = _Parser(text)
    steps: list[PassStep] = []
    while p.tok.kind != "eof":
        if steps:
            p.expect(",")
        name = p.expect_kind("word", "a pass name").text
        options: dict[str, Any] = {}
        if p.accept("{"):
            while not p.accept("}"):
                if options:
                    p.expect(",")
                key = p.expect_kind("word", "an option name").text
                p.expect("=")
                options[key] = p.parse_attr_value()
        steps.append(PassStep(name, options))
    if not steps:
        raise ParseError("empty pipeline", 1, 1)
    return steps


@dataclass
class PassManager:
    """Runs passes in order, verifying after each; can print IR after passes and time them."""

    verify_each: bool = True
    print_after_all: bool = False
    print_after_change: bool = False
    stream: TextIO | None = None
    on_stage: Callable[[str, Graph], None] | None = None
    timings: list[tuple[str, float]] = field(default_factory=list)

    def run(self, graph: Graph, pipeline: str | list[PassStep]) -> Graph:
        steps = parse_pipeline(pipeline) if isinstance(pipeline, str) else pipeline
        if self.verify_each:
            verify(graph, after="input")
        for step in steps:
            fn = get_pass(step.name)
            before = print_graph(graph) if self.print_after_change else ""
            start = time.perf_counter()
            try:
                out = fn(clone(graph), **step.options)
            except TypeError as e:
                raise MlpcError(f"pass {step}: bad options ({e})") from None
            self.timings.append((str(step), time.perf_counter() - start))
            if self.verify_each:
                verify(out, after=str(step))
            if self.on_stage is not None:
                self.on_stage(step.name, out)
            if self.stream is not None:
                text = print_graph(out)
                if self.print_after_all or (self.print_after_change and text != before):
                    self.stream.write(f"// ----- IR after {step} -----\n{text}\n")
            graph = out
        return graph

    def timing_report(self) -> str:
        total = sum(t for _, t in self.timings) or 1e-12
        lines = [f"{'pass':<40} {'ms':>9} {'%':>6}"]
        for name, t in self.timings:
            lines.append(f"{name[:40]:<40} {t * 1e3:9.2f} {100 * t / total:6.1f}")
        return "\n".join(lines)
