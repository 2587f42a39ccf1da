"""Optimizer passes: turn `grad.<p>` outputs into update ops with the state as graph inputs/outputs."""

from __future__ import annotations

from typing import Any, Callable

from mlpc.errors import MlpcError
from mlpc.ir import Graph, Input, Op, Output, Value, substitute
from mlpc.ops import Builder
from mlpc.ops.optim import STEP_TYPE
from passes.manager import register_pass

STEP = "t"


def _params_and_grads(graph: Graph) -> list[tuple[Input, Value]]:
    pairs = []
    for p in graph.inputs_with_role("param"):
        if not graph.has_output("grad." + p.name):
            raise MlpcError(f"optimizer pass needs output grad.{p.name}: run autodiff first")
        pairs.append((p, graph.output("grad." + p.name).value))
    if not pairs:
        raise MlpcError("optimizer pass found no param inputs to update")
    return pairs


def _state(name: str, like: Value) -> Input:
    return Input(name, Value(like.type, name), "state")


def apply_updates(graph: Graph, prefix: str, state_names: list[str],
                  emit: Callable[[Builder, Value, Value, list[Value], Value], Any],
                  pre: Callable[[Graph, list[tuple[Input, list[Input]]]], tuple[Graph, list[Op]]] | None = None
                  ) -> Graph:
    """Shared skeleton: add state inputs, emit one update op per param, rewire outputs."""
    pairs = _params_and_grads(graph)
    step = Input(STEP, Value(STEP_TYPE, STEP), "state")
    per_param = [(p, [_state(f"{prefix}.{s}.{p.name}", p.value) for s in state_names]) for p, _ in pairs]
    head: list[Op] = []
    if pre is not None:
        graph, head = pre(graph, per_param)
        pairs = _params_and_grads(graph)
    b = Builder()
    outs = [o for o in graph.outputs if not o.name.startswith("grad.")]
    for (p, g), (_, states) in zip(pairs, per_param):
        b.loc = ""
        result = emit(b, p.value, g, [s.value for s in states], step.value)
        results = result if isinstance(result, tuple) else (result,)
        outs.append(Output(p.name, results[0]))
        outs.extend(Output(s.name, r) for s, r in zip(states, results[1:]))
    new_t = b.add(step.value, b.op("full", value=1.0, dtype="i32", shape=()))
    outs.append(Output(STEP, new_t))
    state_inputs = [s for _, states in per_param for s in states] + [step]
    return graph.replace(inputs=graph.inputs + state_inputs, ops=head + graph.ops + b.ops, outputs=outs)


@register_pass("sgd")
def sgd(graph: Graph, lr: float = 0.01, momentum: float = 0.0, dampening: float = 0.0,
        nesterov: bool = False, weight_decay: float = 0.0) -> Graph:
    """PyTorch SGD with optional momentum buffer (state `sgd.buf.<p>`), Nesterov and weight decay."""
    attrs = dict(lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov, weight_decay=weight_decay)

    def emit(b: Builder, p: Value, g: Value, state: list[Value], t: Value) -> Any:
        return b.sgd_update(p, g, *state, t, **attrs)

    return apply_updates(graph, "sgd", ["buf"] if momentum else [], emit)


@register_pass("momentum")
def momentum(graph: Graph, lr: float = 0.01, beta: float = 0.9, unbiased: bool = False,
             nesterov: bool = False) -> Graph:
    """The lecture's momentum (state `momentum.u.<p>`); Nesterov evaluates the graph at p - lr*u."""

    def emit(b: Builder, p: Value, g: Value, state: list[Value], t: Value) -> Any:
        return b.momentum_update(p, g, state[0], t, lr=lr, beta=beta, unbiased=unbiased)

    def look_ahead(g: Graph, per_param: list[tuple[Input, list[Input]]]) -> tuple[Graph, list[Op]]:
        b = Builder()
        mapping = {}
        for p, (u,) in per_param:
            mapping[p.value] = b.sub(p.value, b.mul(u.value, b.scalar(lr, p.value)))
        return substitute(g, mapping), b.ops

    return apply_updates(graph, "momentum", ["u"], emit, look_ahead if nesterov else None)


@register_pass("adam")
def adam(graph: Graph, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
         bias_correction: bool = True, weight_decay: float = 0.0, decoupled: bool = False) -> Graph:
    """Adam / AdamW (states `adam.m.<p>`, `adam.v.<p>`), exactly docs/design.md's formula."""
    attrs = dict(lr=lr, beta1=float(betas[0]), beta2=float(betas[1]), eps=eps,
                 bias_correction=bias_correction, weight_decay=weight_decay, decoupled=decoupled)

    def emit(b: Builder, p: Value, g: Value, state: list[Value], t: Value) -> Any:
        return b.adam_update(p, g, state[0], state[1], t, **attrs)

    return apply_updates(graph, "adam", ["m", "v"], emit)
