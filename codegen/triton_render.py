"""Renders kernel plans to @triton.jit source: matmul+epilogue, elementwise, reduction, SCE, optimizers."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

from codegen import triton_config as cfg
from codegen.kernel_plan import (
    Body,
    EwiseKernel,
    Kernel,
    MatmulKernel,
    OptKernel,
    ReduceKernel,
    RowwiseKernel,
    SceKernel,
)
from codegen.triton_dropout import DropoutKernel, render_dropout
from codegen.triton_exprs import SIG_DTYPE, TL_DTYPE, compute_type, const_view_text, flit, op_expr
from codegen.triton_exprs import render as render_expr
from codegen.views import UnsupportedError, View
from mlpc.ir import Value
from mlpc.ops.optim import StepScalar, update_rule

PRECISIONS = ("tf32", "ieee", "bf16")


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@dataclass
class Launch:
    """One kernel launch: its source, runtime arguments (views or ints), grid and meta-parameters."""

    name: str
    source: str
    args: list[tuple[str, Any]]  # (param name, View | int)
    grid: tuple[int, ...]
    constexprs: dict[str, Any] = field(default_factory=dict)
    num_warps: int = 4
    num_stages: int = 2

    def signature(self) -> dict[str, str]:
        """Triton's AOT signature: pointer element types, i32 scalars, constexprs."""
        sig = {}
        for pname, a in self.args:
            sig[pname] = f"*{SIG_DTYPE[a.dtype]}" if isinstance(a, View) else "i32"
        for c in self.constexprs:
            sig[c] = "constexpr"
        return sig


HEADER = "import triton\nimport triton.language as tl\n\n"


class _Args:
    """Collects a kernel's parameters in order, naming pointer and stride arguments."""

    def __init__(self) -> None:
        self.items: list[tuple[str, Any]] = []

    def ptr(self, prefix: str, view: View) -> str:
        name = f"{prefix}{len(self.items)}"
        self.items.append((name, view))
        return name

    def int(self, name: str, value: int) -> str:
        self.items.append((name, int(value)))
        return name

    def params(self) -> str:
        return ", ".join(n for n, _ in self.items)


def _body_code(body: Body, names: dict[Value, str], load: Callable[[Value, View], str]) -> list[str]:
    lines = []
    for v, view in body.ext.items():
        names[v] = const_view_text(view) if view.is_const else load(v, view)
    for i, op in enumerate(body.ops):
        expr = op_expr(op, [names[w] for w in op.operands])
        var = f"v{i}"
        lines.append(f"    {var} = {expr}")
        names[op.result] = var
    return lines


def _store_value(expr: str, shape_text: str) -> str:
    """A stored expression broadcast to the tile (constants and scalars become full tiles)."""
    return f"(tl.zeros({shape_text}, tl.float32) + {expr})"


# --- elementwise ------------------------------------------------------------------------------

def render_ewise(k: EwiseKernel) -> Launch:
    r, c = k.shape
    numel = r * c
    block, warps = cfg.ewise_block(numel)
    args = _Args()
    ptrs = []
    loads: list[str] = []

    def load(v: Value, view: View) -> str:
        p = args.ptr("x", view)
        pat = view.pattern()
        ct = compute_type(view.dtype)
        if pat == "S":
            loads.append(f"    {p}_v = tl.load({p}).to({ct})")
        else:
            if view.contiguous and view.shape == k.shape:
                off = "idx"
            elif pat == "R":
                off = f"col * {args.int(p + '_sc', view.strides[1])}"
            elif pat == "C":
                off = f"row * {args.int(p + '_sr', view.strides[0])}"
            else:
                off = (f"row * {args.int(p + '_sr', view.strides[0])} + "
                       f"col * {args.int(p + '_sc', view.strides[1])}")
            loads.append(f"    {p}_v = tl.load({p} + {off}, mask=mask, other=0).to({ct})")
        ptrs.append(p)
        return f"{p}_v"

    names: dict[Value, str] = {}
    body_lines = _body_code(k.body, names, load)
    stores = []
    for v, view in k.body.stores:
        if not view.contiguous or view.shape[0] * view.shape[1] != numel:
            raise UnsupportedError("elementwise kernels store contiguous tiles only")
        p = args.ptr("out", view)
        val = _store_value(names[v], "[BLOCK]")
        stores.append(f"    tl.store({p} + idx, {val}.to({TL_DTYPE[view.dtype]}), mask=mask)")
    args.int("R", r)
    args.int("C", c)
    src = [f"@triton.jit\ndef {k.name}({args.params()}, BLOCK: tl.constexpr):",
           "    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)",
           "    mask = idx < R * C",
           "    row = idx // C",
           "    col = idx % C"]
    src += loads + body_lines + stores
    return Launch(k.name, "\n".join(src) + "\n", args.items, (-(-numel // block),),
                  {"BLOCK": block}, warps, 1)


# --- matmul -----------------------------------------------------------------------------------

def render_matmul(k: MatmulKernel, precision: str, interpret: bool = False) -> Launch:
    bm, bn, bk, warps, stages = cfg.matmul_blocks(k.m, k.n, k.k, precision)
    args = _Args()
    a = args.ptr("a", k.a)
    b = args.ptr("b", k.b)
    loads: list[str] = []

    def load(v: Value, view: View) -> str:
        p = args.ptr("e", view)
        pat = view.pattern()
        ct = compute_type(view.dtype)
        if pat == "S":
            loads.append(f"    {p}_v = tl.load({p}).to({ct})")
        elif pat == "R":
            sc = args.int(p + "_sc", view.strides[1])
            loads.append(f"    {p}_v = tl.load({p} + rn * {sc}, mask=rn < N, other=0).to({ct})[None, :]")
        elif pat == "C":
            sr = args.int(p + "_sr", view.strides[0])
            loads.append(f"    {p}_v = tl.load({p} + rm * {sr}, mask=rm < M, other=0).to({ct})[:, None]")
        else:
            sr = args.int(p + "_sr", view.strides[0])
            sc = args.int(p + "_sc", view.strides[1])
            loads.append(f"    {p}_v = tl.load({p} + rm[:, None] * {sr} + rn[None, :] * {sc}, "
                         f"mask=mask, other=0).to({ct})")
        return f"{p}_v"

    names: dict[Value, str] = {k.root: "acc"}
    body_lines = _body_code(k.body, names, load)
    stores = []
    if k.split_k > 1:
        assert k.partial is not None
        p = args.ptr("part", k.partial)
        stores.append(f"    tl.store({p} + pid_k * M * N + rm[:, None] * N + rn[None, :], acc, mask=mask)")
    for v, view in k.body.stores:
        if not view.contiguous or view.shape != (k.m, k.n):
            raise UnsupportedError("matmul epilogues store contiguous [M, N] tiles only")
        p = args.ptr("out", view)
        val = _store_value(names[v], "[BM, BN]")
        stores.append(f"    tl.store({p} + rm[:, None] * N + rn[None, :], {val}.to({TL_DTYPE[view.dtype]}), "
                      "mask=mask)")
    for v, part in k.colsums:
        if part.shape != (-(-k.m // bm), k.n):
            raise UnsupportedError("column-sum partials do not match BLOCK_M")
        p = args.ptr("cs", part)
        stores.append(f"    tl.store({p} + pid_m * N + rn, tl.sum(tl.where(mask, {names[v]}, 0.0), axis=0), "
                      "mask=rn < N)")
    for nm, size in (("M", k.m), ("N", k.n), ("K", k.k), ("sam", k.a.strides[0]), ("sak", k.a.strides[1]),
                     ("sbk", k.b.strides[0]), ("sbn", k.b.strides[1])):
        args.int(nm, size)
    if precision == "bf16" and interpret:
        # triton 3.6's interpreter multiplies bf16 operands as their uint16 bit patterns: round the
        # operands to bf16 and multiply in fp32 instead (the same products the GPU's bf16 dot forms)
        dot = ('tl.dot(at.to(tl.bfloat16).to(tl.float32), bt.to(tl.bfloat16).to(tl.float32), acc, '
               'input_precision="ieee")')
    elif precision == "bf16":
        dot = "tl.dot(at.to(tl.bfloat16), bt.to(tl.bfloat16), acc)"
    else:
        dot = f'tl.dot(at, bt, acc, input_precision="{precision}")'
    src = [f"@triton.jit\ndef {k.name}({args.params()}, BM: tl.constexpr, BN: tl.constexpr, "
           "BK: tl.constexpr, GROUP_M: tl.constexpr, SPLIT_K: tl.constexpr):",
           "    pid = tl.program_id(0)",
           "    pid_k = tl.program_id(1)",
           "    num_m = tl.cdiv(M, BM)",
           "    num_n = tl.cdiv(N, BN)",
           "    group = GROUP_M * num_n",
           "    first = (pid // group) * GROUP_M",
           "    gsize = tl.minimum(num_m - first, GROUP_M)",
           "    pid_m = first + (pid % group) % gsize",
           "    pid_n = (pid % group) // gsize",
           "    rm = pid_m * BM + tl.arange(0, BM)",
           "    rn = pid_n * BN + tl.arange(0, BN)",
           "    ram = rm % M",
           "    rbn = rn % N",
           "    rk = tl.arange(0, BK)",
           f"    acc = tl.zeros((BM, BN), dtype={'tl.float32'})",
           "    for k0 in range(pid_k * BK, K, BK * SPLIT_K):",
           "        kk = k0 + rk",
           "        at = tl.load(a0 + ram[:, None] * sam + kk[None, :] * sak, mask=kk[None, :] < K, other=0.0)",
           "        bt = tl.load(b1 + kk[:, None] * sbk + rbn[None, :] * sbn, mask=kk[:, None] < K, other=0.0)",
           f"        acc = {dot}",
           "    mask = (rm < M)[:, None] & (rn < N)[None, :]"]
    assert a == "a0" and b == "b1"
    src += loads + body_lines + stores
    tiles = -(-k.m // bm) * -(-k.n // bn)
    return Launch(k.name, "\n".join(src) + "\n", args.items, (tiles, k.split_k),
                  {"BM": bm, "BN": bn, "BK": bk, "GROUP_M": 8, "SPLIT_K": k.split_k}, warps, stages)


# --- column reduction -------------------------------------------------------------------------

def render_reduce(k: ReduceKernel) -> Launch:
    rows, cols = k.src.shape
    br, bc = cfg.reduce_blocks(-(-rows // k.splits), cols)
    per = -(-rows // k.splits)
    args = _Args()
    x = args.ptr("x", k.src)
    out = args.ptr("out", k.out)
    for nm, val in (("R", rows), ("C", cols), ("sr", k.src.strides[0]), ("sc", k.src.strides[1]),
                    ("PER", per)):
        args.int(nm, val)
    is_max = k.op == "max"
    init = "tl.full((BR, BC), -float(\"inf\"), tl.float32)" if is_max else "tl.zeros((BR, BC), tl.float32)"
    other = '-float("inf")' if is_max else "0.0"
    step = "acc = tl.maximum(acc, t)" if is_max else "acc += t"
    final = "tl.max(acc, axis=0)" if is_max else "tl.sum(acc, axis=0)"
    src = [f"@triton.jit\ndef {k.name}({args.params()}, BR: tl.constexpr, BC: tl.constexpr):",
           "    pid_s = tl.program_id(0)",
           "    cols = tl.program_id(1) * BC + tl.arange(0, BC)",
           "    cmask = cols < C",
           f"    acc = {init}",
           "    r0 = pid_s * PER",
           "    r1 = tl.minimum(r0 + PER, R)",
           "    for r in range(r0, r1, BR):",
           "        rows = r + tl.arange(0, BR)",
           "        m = (rows < r1)[:, None] & cmask[None, :]",
           f"        t = tl.load({x} + rows[:, None] * sr + cols[None, :] * sc, mask=m, other={other})"
           ".to(tl.float32)",
           f"        {step}",
           f"    res = {final} * {flit(k.scale)}",
           f"    tl.store({out} + pid_s * C + cols, res.to({TL_DTYPE[k.out.dtype]}), mask=cmask)"]
    warps = 4 if br * bc >= 1024 else 1
    return Launch(k.name, "\n".join(src) + "\n", args.items, (k.splits, -(-cols // bc)),
                  {"BR": br, "BC": bc}, warps, 1)


# --- softmax cross-entropy ----------------------------------------------------------------------

def render_sce(k: SceKernel) -> Launch:
    batch, classes = k.logits.shape
    _, bc, warps = cfg.sce_blocks(batch, classes)
    rows = k.rows_per_program
    if not k.logits.contiguous or not k.labels.contiguous:
        raise UnsupportedError("softmax cross-entropy needs contiguous logits and labels")
    args = _Args()
    lg = args.ptr("logits", k.logits)
    lb = args.ptr("labels", k.labels)
    lines = ["    pid = tl.program_id(0)",
             "    rows = pid * ROWS + tl.arange(0, ROWS)",
             "    cols = tl.arange(0, BC)",
             "    rmask = rows < B",
             "    m = rmask[:, None] & (cols < C)[None, :]",
             f"    x = tl.load({lg} + rows[:, None] * C + cols[None, :], mask=m, other=-float(\"inf\"))"
             ".to(tl.float32)",
             "    x = tl.where(rmask[:, None], x, 0.0)",
             "    mx = tl.max(x, axis=1)",
             "    e = tl.exp(x - mx[:, None])",
             "    s = tl.sum(e, axis=1)",
             f"    lab = tl.load({lb} + rows, mask=rmask, other=0)",
             "    hit = cols[None, :] == lab[:, None]"]
    if k.partial is not None:
        part = args.ptr("part", k.partial)
        lines += ["    xl = tl.sum(tl.where(hit, x, 0.0), axis=1)",
                  "    loss = tl.where(rmask, tl.log(s) + mx - xl, 0.0)",
                  f"    tl.store({part} + pid, tl.sum(loss, axis=0).to({TL_DTYPE[k.partial.dtype]}))"]
    if k.grad is not None:
        assert k.g is not None
        if k.g.is_const:
            gexpr = const_view_text(k.g)
        else:
            gp = args.ptr("g", k.g)
            lines.append(f"    gs = tl.load({gp}).to(tl.float32)")
            gexpr = "gs"
        gr = args.ptr("grad", k.grad)
        lines += [f"    scale = {gexpr} / B",
                  "    d = (e / s[:, None] - tl.where(hit, 1.0, 0.0)) * scale",
                  f"    tl.store({gr} + rows[:, None] * C + cols[None, :], d.to({TL_DTYPE[k.grad.dtype]}), mask=m)"]
    args.int("B", batch)
    args.int("C", classes)
    src = [f"@triton.jit\ndef {k.name}({args.params()}, ROWS: tl.constexpr, BC: tl.constexpr):"] + lines
    return Launch(k.name, "\n".join(src) + "\n", args.items, (-(-batch // rows),),
                  {"ROWS": rows, "BC": bc}, warps, 1)


def render_rowwise(k: RowwiseKernel) -> Launch:
    _, bc, warps = cfg.sce_blocks(k.rows, k.cols)
    args = _Args()
    x = args.ptr("x", k.src)
    out = args.ptr("out", k.out)
    lines = ["    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)",
             "    cols = tl.arange(0, BC)",
             "    rmask = rows < B",
             "    m = rmask[:, None] & (cols < C)[None, :]"]
    if k.op == "one_hot":
        lines += [f"    lab = tl.load({x} + rows, mask=rmask, other=-1)",
                  "    y = tl.where(cols[None, :] == lab[:, None], 1.0, 0.0)"]
    else:
        lines += [f"    v = tl.load({x} + rows[:, None] * C + cols[None, :], mask=m, other=-float(\"inf\"))"
                  ".to(tl.float32)",
                  "    v = tl.where(rmask[:, None], v, 0.0)",
                  "    s = v - tl.max(v, axis=1)[:, None]",
                  "    e = tl.exp(s)",
                  "    total = tl.sum(e, axis=1)[:, None]",
                  "    y = e / total" if k.op == "softmax" else "    y = s - tl.log(total)"]
    lines.append(f"    tl.store({out} + rows[:, None] * C + cols[None, :], y.to({TL_DTYPE[k.out.dtype]}), mask=m)")
    args.int("B", k.rows)
    args.int("C", k.cols)
    src = [f"@triton.jit\ndef {k.name}({args.params()}, ROWS: tl.constexpr, BC: tl.constexpr):"] + lines
    return Launch(k.name, "\n".join(src) + "\n", args.items, (-(-k.rows // k.rows_per_program),),
                  {"ROWS": k.rows_per_program, "BC": bc}, warps, 1)


# --- optimizers -----------------------------------------------------------------------------

def _bias_corr(beta: str) -> str:
    """f32(1 - beta**step) for a runtime f32 beta, in double like the NumPy reference (beta 0 -> 1)."""
    return (f"tl.where({beta} > 0, 1.0 - tl.exp((tl.load(t) + 1).to(tl.float64) * "
            f"tl.log(tl.maximum({beta}, 1e-30).to(tl.float64))), 1.0).to(tl.float32)")


def _step_scalar(sc: StepScalar) -> str:
    """A per-step scalar of an update rule (t: the step-count pointer; hyperparameters loaded as h_<name>)."""
    if sc.kind == "first_step":
        return "tl.load(t) == 0"
    if sc.kind == "bias_correction":
        return _bias_corr(f"h_{sc.beta}")
    raise UnsupportedError(f"unknown step scalar {sc.kind!r}")


def _opt_math(k: OptKernel) -> list[str]:
    """The op's update rule (mlpc/ops/optim.py) rendered over p, g, s0.., the loaded hyperparameters
    h_<name> and the step scalars c0..; assigns the new values to p and s0.."""
    rule = update_rule(k.opname, k.attrs)
    lines = [f"    c{i} = {_step_scalar(sc)}" for i, sc in enumerate(rule.scalars)]
    args = (["p", "g"] + [f"s{j}" for j in range(len(rule.slots))] + [f"h_{h}" for h in rule.hypers]
            + [f"c{i}" for i in range(len(rule.scalars))])
    targets = ["p"] + [f"s{j}" for j in range(len(rule.slots))]
    news = [f"n{j}" for j in range(len(rule.outputs))]
    lines += [f"    {n} = {render_expr(e, args, k.p.dtype)}" for n, e in zip(news, rule.outputs)]
    lines += [f"    {tgt} = {n}" for tgt, n in zip(targets, news)]
    return lines


def render_optimizer(k: OptKernel) -> Launch:
    block, warps = cfg.optimizer_block(k.n)
    args = _Args()
    pp = args.ptr("p", k.p)
    gp = args.ptr("g", k.g)
    sp = [args.ptr("s", s) for s in k.slots]
    tp = args.ptr("t", k.t)
    # a constant hyperparameter is inlined below and takes no pointer argument
    hp = {name: ("" if view.is_const else args.ptr("h", view)) for name, view in k.hyper.items()}
    args.int("n", k.n)
    dt = TL_DTYPE[k.p.dtype]
    lines = ["    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)",
             "    mask = idx < n",
             f"    p = tl.load({pp} + idx, mask=mask).to(tl.float32)",
             f"    g = tl.load({gp} + idx, mask=mask).to(tl.float32)",
             "    t = " + tp]
    for name, ptr in hp.items():
        view = k.hyper[name]
        lines.append(f"    h_{name} = " + (f"{float(view.const or 0.0)!r}" if view.is_const else
                                           f"tl.load({ptr}).to(tl.float32)"))
    for j, s in enumerate(sp):
        lines.append(f"    s{j} = tl.load({s} + idx, mask=mask).to(tl.float32)")
    lines += _opt_math(k)
    lines.append(f"    tl.store({pp} + idx, p.to({dt}), mask=mask)")
    for j, s in enumerate(sp):
        lines.append(f"    tl.store({s} + idx, s{j}.to({dt}), mask=mask)")
    src = [f"@triton.jit\ndef {k.name}({args.params()}, BLOCK: tl.constexpr):"] + lines
    return Launch(k.name, "\n".join(src) + "\n", args.items, (-(-k.n // block),), {"BLOCK": block}, warps, 1)


def render(k: Kernel, precision: str, interpret: bool | None = None) -> Launch:
    """Source and launch of one kernel; `interpret` (default: TRITON_INTERPRET is set) emits the
    interpreter-safe form of bf16 dots."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if isinstance(k, MatmulKernel):
        return render_matmul(k, precision, _interpreting() if interpret is None else interpret)
    if isinstance(k, EwiseKernel):
        return render_ewise(k)
    if isinstance(k, ReduceKernel):
        return render_reduce(k)
    if isinstance(k, SceKernel):
        return render_sce(k)
    if isinstance(k, RowwiseKernel):
        return render_rowwise(k)
    if isinstance(k, DropoutKernel):
        return render_dropout(k, Launch, _Args())
    return render_optimizer(k)


def module_source(launches: list[Launch]) -> str:
    return HEADER + "\n\n".join(la.source for la in launches)
