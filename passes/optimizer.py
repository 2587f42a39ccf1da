"""Optimizer passes: turn `grad.<p>` outputs into update ops with the state as graph inputs/outputs.

Hyperparameters (lr, momentum, betas, weight decay) are graph inputs of role `hyper` (scalars of the
parameters' dtype named by `hyper_input`), one set per parameter group, so a trainer changes them between
steps without recompiling. Options of the passes are only the structural choices. `clip` > 0 adds
torch's global-norm gradient clipping: the scale min(1, clip / (norm + 1e-6)) is computed in the
graph and read by every update op as one more scalar operand (applied inside the update kernel).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from mlpc.errors import MlpcError
from mlpc.ir import Graph, Input, Op, Output, Value, substitute
from mlpc.ops import Builder
from mlpc.ops.optim import STEP_TYPE
from mlpc.types import TensorType
from passes.manager import register_pass

STEP = "t"
CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_'s

Emit = Callable[[Builder, Value, Value, list[Value], Value, list[Value]], Any]


def hyper_input(key: str, group: int = 0) -> str:
    """The graph input holding hyperparameter `key` of parameter group `group`."""
    return f"hyper.{key}" if group == 0 else f"hyper.g{group}.{key}"


def _params_and_grads(graph: Graph) -> list[tuple[Input, Value]]:
    pairs = []
    for p in graph.inputs_with_role("param"):
        if not graph.has_output("grad." + p.name):
            raise MlpcError(f"optimizer pass needs output grad.{p.name}: run autodiff first")
        pairs.append((p, graph.output("grad." + p.name).value))
    if not pairs:
        raise MlpcError("optimizer pass found no param inputs to update")
    return pairs


def step_input(graph: Graph) -> tuple[Input, list[Input]]:
    """The step count input `t`, and the inputs to add for it: none when the traced graph already reads t
    (a Dropout mask is keyed by it)."""
    for i in graph.inputs:
        if i.name == STEP:
            return i, []
    step = Input(STEP, Value(STEP_TYPE, STEP), "state")
    return step, [step]


def _state(name: str, like: Value) -> Input:
    return Input(name, Value(like.type, name), "state")


def group_of_params(names: Sequence[str], groups: Sequence[Sequence[str]]) -> dict[str, int]:
    """Group index of each parameter: groups[k] lists the names of group k + 1; the rest are group 0."""
    where: dict[str, int] = {n: 0 for n in names}
    for k, members in enumerate(groups, 1):
        if isinstance(members, str):
            raise MlpcError(f"parameter group {k} must list parameter names, got the string {members!r}")
        for n in members:
            if n not in where:
                raise MlpcError(f"parameter group {k} names {n!r}, which is not a parameter "
                                f"(parameters: {', '.join(names)})")
            if where[n]:
                raise MlpcError(f"parameter {n!r} is in groups {where[n]} and {k}")
            where[n] = k
    return where


def _clip_scale(b: Builder, grads: list[Value], max_norm: float) -> Value:
    """min(1, max_norm / (||all grads||_2 + 1e-6)) as an f32[] value."""
    total: Value | None = None
    for g in grads:
        # column sums first: fusion computes them in the registers of the kernel producing g (the
        # weight-gradient matmul's epilogue), so the squares are never written to memory
        sq = b.square(g)
        while len(sq.shape) > 1:
            sq = b.sum(sq, axes=(0,))
        sq = b.sum(sq, axes=(0,)) if sq.shape else sq
        total = sq if total is None else b.add(total, sq)
    assert total is not None
    norm = b.sqrt(total)
    coef = b.div(b.scalar(max_norm, norm), b.add(norm, b.scalar(CLIP_EPS, norm)))
    return b.minimum(coef, b.scalar(1.0, norm))


def apply_updates(graph: Graph, prefix: str, state_names: list[str], hyper_keys: list[str], emit: Emit,
                  groups: Sequence[Sequence[str]] = (), clip: float = 0.0,
                  pre: Callable[[Graph, list[tuple[Input, list[Input], list[Value]]]], tuple[Graph, list[Op]]]
                  | None = None) -> Graph:
    """Shared skeleton: add state and hyper inputs, emit one update op per param, rewire outputs."""
    if clip < 0:
        raise MlpcError(f"clip (the max gradient norm) must be >= 0, got {clip}")
    pairs = _params_and_grads(graph)
    group = group_of_params([p.name for p, _ in pairs], groups)
    step, new_step_inputs = step_input(graph)
    htype = TensorType(pairs[0][0].value.dtype, ())
    used = sorted(set(group.values()))
    hyper = {gi: [Input(hyper_input(k, gi), Value(htype, hyper_input(k, gi)), "hyper") for k in hyper_keys]
             for gi in used}
    per_param = [(p, [_state(f"{prefix}.{s}.{p.name}", p.value) for s in state_names],
                  [h.value for h in hyper[group[p.name]]]) for p, _ in pairs]
    head: list[Op] = []
    if pre is not None:
        graph, head = pre(graph, per_param)
        pairs = _params_and_grads(graph)
    b = Builder()
    gscale = [_clip_scale(b, [g for _, g in pairs], clip)] if clip else []
    outs = [o for o in graph.outputs if not o.name.startswith("grad.")]
    for (p, g), (_, states, hv) in zip(pairs, per_param):
        b.loc = ""
        result = emit(b, p.value, g, [s.value for s in states], step.value, hv + gscale)
        results = result if isinstance(result, tuple) else (result,)
        outs.append(Output(p.name, results[0]))
        outs.extend(Output(s.name, r) for s, r in zip(states, results[1:]))
    new_t = b.add(step.value, b.op("full", value=1.0, dtype="i32", shape=()))
    outs.append(Output(STEP, new_t))
    state_inputs = [s for _, states, _ in per_param for s in states] + new_step_inputs
    hyper_inputs = [h for gi in used for h in hyper[gi]]
    return graph.replace(inputs=graph.inputs + state_inputs + hyper_inputs, ops=head + graph.ops + b.ops,
                         outputs=outs)


def _groups(groups: Any) -> list[list[str]]:
    return [list(g) for g in (groups or ())]


RUNTIME = ("lr", "beta", "betas", "beta1", "beta2", "weight_decay")


def _refuse_runtime(name: str, runtime: dict[str, Any]) -> None:
    """Runtime hyperparameters are graph inputs, not pass options: say so instead of a bare TypeError."""
    for key in runtime:
        if key in RUNTIME:
            raise MlpcError(f"pass {name}: {key} is a runtime input of the step (hyper.{key}, set by the trainer), "
                            f"not a pass option")
        raise MlpcError(f"pass {name}: unknown option {key!r}")


@register_pass("sgd")
def sgd(graph: Graph, momentum: float = 0.0, dampening: float = 0.0, nesterov: bool = False,
        clip: float = 0.0, groups: Any = None, **runtime: Any) -> Graph:
    """PyTorch SGD; momentum != 0 adds the buffer (state `sgd.buf.<p>`) and a runtime `momentum`;
    runtime `lr`, `weight_decay` (hyper inputs)."""
    _refuse_runtime("sgd", runtime)
    if nesterov and (not momentum or dampening):
        raise MlpcError("Nesterov SGD needs momentum > 0 and dampening 0")
    attrs = dict(momentum=bool(momentum), dampening=float(dampening), nesterov=bool(nesterov), clip=bool(clip))
    keys = ["lr"] + (["momentum"] if momentum else []) + ["weight_decay"]

    def emit(b: Builder, p: Value, g: Value, state: list[Value], t: Value, h: list[Value]) -> Any:
        return b.sgd_update(p, g, *state, t, *h, **attrs)

    return apply_updates(graph, "sgd", ["buf"] if momentum else [], keys, emit, _groups(groups), clip)


@register_pass("momentum")
def momentum(graph: Graph, unbiased: bool = False, nesterov: bool = False, clip: float = 0.0,
             groups: Any = None, **runtime: Any) -> Graph:
    """The lecture's momentum (state `momentum.u.<p>`, runtime `lr` and `beta`). Nesterov takes the
    gradients at p - lr*u (the runtime lr); the loss (and every other non-gradient output) stays the
    one at p, like every other optimizer's step."""
    _refuse_runtime("momentum", runtime)

    def emit(b: Builder, p: Value, g: Value, state: list[Value], t: Value, h: list[Value]) -> Any:
        return b.momentum_update(p, g, state[0], t, *h, unbiased=unbiased, clip=bool(clip))

    def look_ahead(g: Graph, per_param: list[tuple[Input, list[Input], list[Value]]]) -> tuple[Graph, list[Op]]:
        b = Builder()
        mapping = {}
        for p, (u,), hv in per_param:
            lr = b.broadcast_to(hv[0], shape=p.value.shape)
            mapping[p.value] = b.sub(p.value, b.mul(u.value, lr))
        at_theta, values = _copy_ops(g.ops)  # the loss at p (its gradient ops are dead code for simplify)
        ahead = substitute(g, mapping)
        at_p = {o.name: o.value for o in g.outputs}  # substitute gives the look-ahead graph fresh values
        outs = [o if o.name.startswith("grad.") else Output(o.name, values.get(at_p[o.name], at_p[o.name]))
                for o in ahead.outputs]
        return ahead.replace(outputs=outs), b.ops + at_theta

    return apply_updates(graph, "momentum", ["u"], ["lr", "beta"], emit, _groups(groups), clip,
                         look_ahead if nesterov else None)


@register_pass("adam")
def adam(graph: Graph, eps: float = 1e-8, bias_correction: bool = True, decoupled: bool = False,
         clip: float = 0.0, groups: Any = None, **runtime: Any) -> Graph:
    """Adam / AdamW (states `adam.m.<p>`, `adam.v.<p>`; runtime lr, beta1, beta2, weight_decay), docs/design.md."""
    _refuse_runtime("adam", runtime)
    attrs = dict(eps=float(eps), bias_correction=bool(bias_correction), decoupled=bool(decoupled), clip=bool(clip))

    def emit(b: Builder, p: Value, g: Value, state: list[Value], t: Value, h: list[Value]) -> Any:
        return b.adam_update(p, g, state[0], state[1], t, *h, **attrs)

    return apply_updates(graph, "adam", ["m", "v"], ["lr", "beta1", "beta2", "weight_decay"], emit,
                         _groups(groups), clip)


def _copy_ops(ops: list[Op]) -> tuple[list[Op], dict[Value, Value]]:
    """Copies of `ops` with fresh result values (operands from outside stay); old result -> new result."""
    values: dict[Value, Value] = {}
    out = []
    for op in ops:
        new = Op(op.name, [values.get(v, v) for v in op.operands], [Value(r.type, r.hint) for r in op.results],
                 dict(op.attrs), op.loc)
        for old, r in zip(op.results, new.results):
            r.producer = new
            values[old] = r
        out.append(new)
    return out, values


def bind_hyper(graph: Graph, values: dict[str, float]) -> Graph:
    """The graph with its `hyper` inputs replaced by constants (`values[name]`): a step with frozen
    hyperparameters, e.g. for differential tests against a reference that knows only constants."""
    b = Builder()
    mapping: dict[Value, Value] = {}
    for inp in graph.inputs_with_role("hyper"):
        if inp.name not in values:
            raise MlpcError(f"bind_hyper: no value for {inp.name}")
        mapping[inp.value] = b.scalar(values[inp.name], inp.value)
    bound = substitute(graph, mapping)
    return bound.replace(inputs=[i for i in graph.inputs if i.role != "hyper"], ops=b.ops + bound.ops)
