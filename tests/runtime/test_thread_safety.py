"""Trainers, compiled steps and loaded libraries shared between threads; fork while a thread is inside a step.

A shared trainer must behave like some serial order of the calls made on it. The threads record what
each call returned (losses, parameter reads, checkpoints with their step counts); `replay` then rebuilds
that order one step at a time on a fresh trainer: the next step is the pending one whose recorded loss
equals, bitwise, the loss it gives from the current state. Every read and checkpoint must equal, bitwise,
the state after some number of replayed steps, and the final state the state after all of them.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

import mlpc
from codegen.llvm.target import host_target
from mlpc import nn, optim
from mlpc.checkpoint import load_arrays
from mlpc.errors import InputError
from runtime.llvm_backend import lower_graph
from tests.handgraphs import init_state, mlp_train_graph, random_data

BATCH = 8
STEPS = 12
THREADS = 3


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MLPC_CACHE_DIR", str(tmp_path / "cache"))


def make(backend: str, seed: int = 0) -> mlpc.Trainer:
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    return mlpc.compile(model, nn.CrossEntropyLoss(), optim.Adam(lr=0.05), batch_size=BATCH, backend=backend,
                        seed=seed)


def plan(k: int, steps: int = STEPS) -> list[tuple[np.ndarray, np.ndarray]]:
    """Thread k's batches: full ones and partial ones (5 rows, a second compiled step)."""
    rng = np.random.default_rng(100 + k)
    out = []
    for i in range(steps):
        n = 5 if i % 3 == 0 else BATCH
        out.append((rng.standard_normal((n, 6)).astype(np.float32), rng.integers(0, 3, n).astype(np.int32)))
    return out


def snapshot(obj: Any) -> dict[str, np.ndarray]:
    return {**obj.parameters(), **obj.optimizer_state()}


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes() for k in a)


def replay(obj: Any, start: dict[str, np.ndarray], plans: list[list[Any]], losses: list[list[float]]
           ) -> list[dict[str, np.ndarray]]:
    """The states after 0, 1, ... steps of the serial order the recorded losses imply (AssertionError if none)."""
    states = [start]
    pos = [0] * len(plans)
    for _ in range(sum(map(len, plans))):
        for k in range(len(plans)):
            if pos[k] == len(plans[k]):
                continue
            obj.load_state(states[-1])
            x, y = plans[k][pos[k]]
            if obj.step(x, y) == losses[k][pos[k]]:
                pos[k] += 1
                states.append(snapshot(obj))
                break
        else:
            raise AssertionError(f"no serial order explains the losses after {len(states) - 1} steps")
    return states


def run_shared(obj: Any, tmp_path: Any, save: bool) -> tuple[list[list[float]], list[Any], list[Any]]:
    """THREADS threads step `obj` while one reads parameters and (when `save`) one writes checkpoints."""
    plans = [plan(k) for k in range(THREADS)]
    losses: list[list[float]] = [[] for _ in range(THREADS)]
    reads: list[dict[str, np.ndarray]] = []
    saves: list[str] = []
    go = threading.Barrier(THREADS + 2)
    done = threading.Event()

    def stepper(k: int) -> None:
        go.wait()
        for x, y in plans[k]:
            losses[k].append(obj.step(x, y))

    def reader() -> None:
        go.wait()
        while not done.is_set() and len(reads) < 200:
            reads.append(obj.parameters())

    def saver() -> None:
        go.wait()
        while save and not done.is_set() and len(saves) < 40:
            path = str(tmp_path / f"c{len(saves)}.safetensors")
            obj.save(path)
            saves.append(path)

    steppers = [threading.Thread(target=stepper, args=(k,)) for k in range(THREADS)]
    others = [threading.Thread(target=reader), threading.Thread(target=saver)]
    for t in steppers + others:
        t.start()
    for t in steppers:
        t.join()
    done.set()
    for t in others:
        t.join()
    assert all(len(v) == STEPS for v in losses)
    return losses, reads, saves


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_one_trainer_shared_by_threads_equals_a_serial_order(backend, tmp_path):
    tr = make(backend)
    start = snapshot(tr)
    losses, reads, saves = run_shared(tr, tmp_path, save=True)
    total = THREADS * STEPS
    assert tr.steps_taken == total and int(tr.optimizer_state()["t"]) == total  # was 80 vs 40 on numpy
    final = snapshot(tr)
    states = replay(make(backend), start, [plan(k) for k in range(THREADS)], losses)
    assert same(final, states[-1])
    params = [{k: v for k, v in s.items() if k in tr.model.parameters()} for s in states]
    for r in reads:
        assert any(same(r, p) for p in params), "a parameter read mixes two steps"
    for path in saves:  # checkpoints: step count and every tensor from one and the same state
        tensors, meta = load_arrays(path)
        steps = int(meta["mlpc.steps"])
        assert same({k.split("/", 1)[1]: v.reshape(states[steps][k.split("/", 1)[1]].shape)
                     for k, v in tensors.items()}, states[steps]), f"torn checkpoint at step {steps}"


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_many_trainers_at_once_match_their_serial_runs(backend):
    n = 4
    trainers = [make(backend, seed=s) for s in range(n)]
    outs: list[list[float]] = [[] for _ in range(n)]
    preds: list[list[np.ndarray]] = [[] for _ in range(n)]
    go = threading.Barrier(2 * n)

    def work(i: int) -> None:
        go.wait()
        for x, y in plan(i):
            outs[i].append(trainers[i].step(x, y))

    def predict(i: int) -> None:
        go.wait()
        for x, _ in plan(i):
            preds[i].append(trainers[i].predict(x))

    threads = [threading.Thread(target=f, args=(i,)) for i in range(n) for f in (work, predict)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(n):
        ref = make(backend, seed=i)
        assert [ref.step(x, y) for x, y in plan(i)] == outs[i]
        assert same(snapshot(ref), snapshot(trainers[i]))
        assert all(np.isfinite(p).all() for p in preds[i])


def test_exported_library_shared_by_threads_equals_a_serial_order_and_validates(tmp_path):
    from tests.aot_util import export

    tr = make("llvm")
    lib = mlpc.load_library(export(tr, tmp_path / "out", "shared", train_batches=[5]).library)
    start = snapshot(lib)
    losses, reads, _ = run_shared(lib, tmp_path, save=False)
    assert lib.steps_taken == THREADS * STEPS
    final = snapshot(lib)
    states = replay(lib, start, [plan(k) for k in range(THREADS)], losses)
    assert same(final, states[-1])
    params = [{k: v for k, v in s.items() if k in reads[0]} for s in states]
    assert all(any(same(r, p) for p in params) for r in reads)
    # the library's wrappers validate like a Trainer: evaluate's labels, masked arrays, load_state values
    x, _ = plan(0)[1]
    pred = lib.predict(x).argmax(axis=1)
    assert lib.evaluate(x, pred) == 1.0
    for bad in (pred[:, None], None, np.array(["a"] * len(x)), np.full(len(x), 3)):
        with pytest.raises(InputError):
            lib.evaluate(x, bad)
    with pytest.raises(InputError, match="masked"):
        lib.step(np.ma.masked_array(x), pred)
    with pytest.raises(InputError, match="masked"):
        lib.predict(np.ma.masked_array(x))
    with pytest.raises(InputError, match="masked"):
        lib.fit(x, np.ma.masked_array(pred))
    with pytest.raises(InputError, match="outside"):
        lib.load_state({"t": np.array(2 ** 40)})
    assert same(snapshot(lib), states[-1])
    target, link = tmp_path / "real.safetensors", tmp_path / "link.safetensors"
    lib.save(str(target))
    os.symlink(target, link)
    lib.save(str(link))  # the C writer replaces the file the link points to, not the link
    assert link.is_symlink() and int(load_arrays(str(target))[1]["mlpc.steps"]) == lib.steps_taken


def wait_bounded(pid: int, seconds: float) -> int:
    """The child's exit status; kills it and fails when it has not exited after `seconds` (a hang)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"the forked child did not exit within {seconds} s: it hangs")


def fork_child(body: Any) -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 70
        try:
            code = 0 if body() else 1
        finally:
            os._exit(code)
    return wait_bounded(pid, 120)


def threaded_target(monkeypatch):
    monkeypatch.setenv("MLPC_NUM_THREADS", "2")
    host_target.cache_clear()


def test_fork_while_another_thread_steps_a_trainer(monkeypatch):
    threaded_target(monkeypatch)
    try:
        tr = mlpc.compile(nn.Sequential(nn.Linear(300, 256), nn.ReLU(), nn.Linear(256, 10)), batch_size=200,
                          backend="llvm")
    finally:
        host_target.cache_clear()
    assert tr._compiled[("step", 200)].meta["threads"] == 2  # the step runs the worker pool
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((200, 300)).astype(np.float32), rng.integers(0, 10, 200).astype(np.int32)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            tr.step(x, y)

    def child() -> bool:  # the state is whole (t matches the step count) and the child can step
        whole = int(tr.optimizer_state()["t"]) == tr.steps_taken
        loss = tr.step(x, y)
        return whole and np.isfinite(loss) and int(tr.optimizer_state()["t"]) == tr.steps_taken

    t = threading.Thread(target=loop)
    t.start()
    try:
        codes = [fork_child(child) for _ in range(6)]
    finally:
        stop.set()
        t.join()
    assert codes == [0] * 6


def test_fork_while_another_thread_is_inside_the_native_step():
    """No Python lock involved (as when C code forks): the child takes over the step lock that a parent
    thread held and restarts the pool, then steps and exits."""
    g = mlp_train_graph([300, 256, 10], 200, "relu", "ce", "adam")
    c = lower_graph(g, target=replace(host_target(), threads=2), use_cache=False)
    assert c.meta["threads"] == 2
    data = random_data(g)
    ref = float(c.run(init_state(g), data)["loss"])
    state = init_state(g)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            c._run(state, data)  # bypasses the Python lock: only the native step lock serializes

    def child() -> bool:
        return float(c._run(init_state(g), data)["loss"]) == ref

    t = threading.Thread(target=loop)
    t.start()
    try:
        codes = [fork_child(child) for _ in range(10)]
    finally:
        stop.set()
        t.join()
    assert codes == [0] * 10
