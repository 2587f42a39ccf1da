"""Full training step on the GPU: mlpc's Triton backend vs PyTorch eager and torch.compile.

Networks: 784-256-256-10 (ReLU, biases, softmax cross-entropy) and tiny-cuda-nn-style MLPs
(32 inputs, 4 hidden layers of 64 or 128, 16 outputs, ReLU, no biases, MSE); Adam everywhere.
Precisions: fp32 with tf32 matmuls (PyTorch: allow_tf32) and bf16 mixed precision (PyTorch:
autocast bf16; mlpc: bf16 matmul operands; fp32 master weights and optimizer state in both).
Each step is timed with triton.testing.do_bench (median, CUDA events) while rotating through
several distinct input batches already on the device. Prints a table, writes JSON.

    python benchmarks/gpu_step.py --batches 10 14 18 --json out.json --budget-s 300
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

NETS = {
    "mnist": dict(sizes=[784, 256, 256, 10], bias=True, loss="sce"),
    "tcnn64": dict(sizes=[32, 64, 64, 64, 64, 16], bias=False, loss="mse"),
    "tcnn128": dict(sizes=[32, 128, 128, 128, 128, 16], bias=False, loss="mse"),
}
ROTATE = 4


def bench(fn: Callable[[], Any], rep_ms: int) -> float:
    """Median milliseconds per call."""
    if torch.cuda.is_available():
        import triton.testing

        return float(triton.testing.do_bench(fn, warmup=10, rep=rep_ms, return_mode="median"))
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def make_data(net: dict, batch: int, device: str, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator(device="cpu").manual_seed(seed)
    sets = []
    for _ in range(ROTATE):
        x = torch.randn(batch, net["sizes"][0], generator=g).to(device)
        if net["loss"] == "sce":
            y = torch.randint(0, net["sizes"][-1], (batch,), generator=g, dtype=torch.int32).to(device)
        else:
            y = torch.randn(batch, net["sizes"][-1], generator=g).to(device)
        sets.append((x, y))
    return sets


def mlpc_step(net: dict, batch: int, precision: str, data: list) -> tuple[Callable[[], Any], Callable[[], float]]:
    import mlpc
    from mlpc import nn, optim

    layers: list[Any] = []
    sizes = net["sizes"]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=False)):
        layers.append(nn.Linear(a, b, bias=net["bias"]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    loss = nn.CrossEntropyLoss() if net["loss"] == "sce" else nn.MSELoss()
    backend = {"tf32": "triton", "bf16": "triton-bf16"}[precision]
    trainer = mlpc.compile(nn.Sequential(*layers), loss=loss, optimizer=optim.Adam(lr=1e-4),
                           batch_size=batch, backend=backend)
    compiled = trainer._compiled_for("step", batch)
    state = trainer._state
    counter = [0]
    last: dict[str, Any] = {}

    def step() -> None:
        x, y = data[counter[0] % ROTATE]
        counter[0] += 1
        last.update(compiled.run(state, {"x": x, "y": y}))

    return step, lambda: float(last["loss"])


Step = tuple[Callable[[], Any], Callable[[], float]]


def torch_step(net: dict, precision: str, data: list, mode: str | None) -> Step:
    device = data[0][0].device
    sizes = net["sizes"]
    layers: list[torch.nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=False)):
        layers.append(torch.nn.Linear(a, b, bias=net["bias"]))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=device.type == "cuda")

    def loss_fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = model(x)
        out = out.float()
        if net["loss"] == "sce":
            return torch.nn.functional.cross_entropy(out, y.long())
        return torch.nn.functional.mse_loss(out, y)

    if mode is not None:
        torch._dynamo.reset()  # each configuration compiles afresh (no recompile limit across models)
    fwd = torch.compile(loss_fn, mode=mode, dynamic=False) if mode is not None else loss_fn
    counter = [0]
    last: list[torch.Tensor] = []

    def step() -> None:
        x, y = data[counter[0] % ROTATE]
        counter[0] += 1
        opt.zero_grad(set_to_none=True)
        loss = fwd(x, y)
        loss.backward()
        opt.step()
        last[:] = [loss.detach()]

    return step, lambda: float(last[0])


def run_config(net_name: str, batch: int, precision: str, modes: list[str], rep_ms: int) -> dict:
    net = NETS[net_name]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    data = make_data(net, batch, device, seed=batch)
    row: dict[str, Any] = {"net": net_name, "batch": batch, "precision": precision}
    makers: dict[str, Callable[[], tuple[Callable[[], Any], Callable[[], float]]]] = {
        "mlpc": lambda: mlpc_step(net, batch, precision, data),
        "eager": lambda: torch_step(net, precision, data, None),
        "compile": lambda: torch_step(net, precision, data, "default"),
        "compile-max-autotune": lambda: torch_step(net, precision, data, "max-autotune-no-cudagraphs"),
    }
    for name in ["mlpc"] + modes:
        t0 = time.perf_counter()
        try:
            step, read_loss = makers[name]()
            for _ in range(3 * ROTATE):  # compile, warm up, and (mlpc) capture a CUDA graph per input set
                step()
            first = read_loss()
            if device == "cuda":
                torch.cuda.synchronize()
            setup = time.perf_counter() - t0
            ms = bench(step, rep_ms)
            row[name] = ms
            row[f"{name}_loss"] = first
            row[f"{name}_setup_s"] = round(setup, 1)
        except Exception as e:  # keep measuring the other variants; the JSON says what broke
            row[name] = None
            row[f"{name}_error"] = f"{type(e).__name__}: {str(e)[:300]}"
        if device == "cuda":
            torch.cuda.empty_cache()
    return row


def fmt(v: Any) -> str:
    return f"{v:8.3f}" if isinstance(v, float) else f"{'-':>8}"


def table(rows: list[dict], modes: list[str]) -> str:
    cols = ["mlpc"] + modes
    head = f"{'net':8} {'prec':5} {'batch':>7} " + " ".join(f"{c[:20]:>20}" for c in cols)
    head += f" {'vs eager':>9} {'vs best compile':>15}"
    lines = [head]
    for r in rows:
        cells = " ".join(f"{fmt(r.get(c)):>20}" for c in cols)
        m = r.get("mlpc")
        eager = r.get("eager")
        comp = [r.get(c) for c in cols if c.startswith("compile") and isinstance(r.get(c), float)]
        ve = f"{eager / m:8.2f}x" if isinstance(m, float) and isinstance(eager, float) else f"{'-':>9}"
        vc = f"{min(comp) / m:14.2f}x" if isinstance(m, float) and comp else f"{'-':>15}"
        lines.append(f"{r['net']:8} {r['precision']:5} {r['batch']:>7} {cells} {ve} {vc}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    ap.add_argument("--batches", nargs="+", type=int, default=[10, 12, 14, 16, 18], help="log2 batch sizes")
    ap.add_argument("--precisions", nargs="+", default=["tf32", "bf16"], choices=["tf32", "bf16"])
    ap.add_argument("--modes", nargs="*", default=["eager", "compile", "compile-max-autotune"])
    ap.add_argument("--autotune-batches", nargs="*", type=int, default=None,
                    help="log2 batch sizes that also run compile-max-autotune (default: all)")
    ap.add_argument("--autotune-nets", nargs="*", default=None, help="nets that run compile-max-autotune")
    ap.add_argument("--rep-ms", type=int, default=100)
    ap.add_argument("--budget-s", type=float, default=1e9, help="skip configurations after this many seconds")
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu (interpreter)"
    start = time.perf_counter()
    rows: list[dict] = []
    skipped = []
    configs = [(p, n, b) for b in args.batches for p in args.precisions for n in args.nets]
    for precision, net, lb in configs:
        if time.perf_counter() - start > args.budget_s:
            skipped.append(f"{net}/{precision}/2^{lb}")
            continue
        modes = [m for m in args.modes if m != "compile-max-autotune" or (
            (args.autotune_batches is None or lb in args.autotune_batches)
            and (args.autotune_nets is None or net in args.autotune_nets))]
        row = run_config(net, 2 ** lb, precision, modes, args.rep_ms)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps({"gpu": gpu, "rows": rows, "skipped": skipped}, indent=1))
    print(f"\nGPU: {gpu}; torch {torch.__version__}; median ms per training step (do_bench)")
    print(table(rows, args.modes))
    if skipped:
        print(f"skipped for the time budget: {', '.join(skipped)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"gpu": gpu, "torch": torch.__version__, "rows": rows,
                                               "skipped": skipped, "elapsed_s": time.perf_counter() - start},
                                              indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", str(os.cpu_count() or 1))
    raise SystemExit(main())
