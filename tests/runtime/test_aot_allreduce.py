"""The C ABI's allreduce hook (NAME_set_allreduce): called between the backward pass and the update on one
contiguous buffer; two library states on two threads, summing through it, train like one process."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import mlpc
from mlpc import nn
from mlpc.errors import MlpcError
from tests.aot_util import compile_c, data, export, ragged_model, run, trainer

# Two halves of a batch of 8 summed through the hook against one process on all 8 rows: only the float
# summation order differs (measured ~3e-8 absolute on the parameters after 6 steps).
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def hooked(tmp_path_factory):
    out = tmp_path_factory.mktemp("hooked")
    return export(trainer(ragged_model(), batch=4), out, "hooked", allreduce_hook=True)


def _sum_between(libs: list, calls: list) -> None:
    """Each state's hook adds the other states' buffers to its own: an in-process Allreduce(SUM)."""
    barrier = threading.Barrier(len(libs), timeout=60)
    seen: dict[int, np.ndarray] = {}

    def hook_of(me: int):  # noqa: ANN202
        def hook(buf: np.ndarray) -> None:
            calls.append((me, buf.size, float(buf[-1])))
            seen[me] = buf.copy()
            barrier.wait()
            buf[:] = sum(seen[r] for r in sorted(seen))
            barrier.wait()
        return hook
    for r, lib in enumerate(libs):
        lib.set_allreduce(hook_of(r))


def test_two_states_summing_through_the_hook_train_like_one_process(hooked) -> None:
    libs = [mlpc.load_library(hooked.library) for _ in range(2)]
    calls: list = []
    _sum_between(libs, calls)
    ref = trainer(ragged_model(), batch=8)  # the same initial weights, one process, the global batch
    rng = np.random.default_rng(1)
    bucket = hooked.spec.train_steps[0].bucket[1]
    for _ in range(6):
        x, y = data(rng, 8, 33, 5)
        losses: dict[int, float] = {}

        def rank(r: int, x: np.ndarray = x, y: np.ndarray = y, losses: dict = losses) -> None:
            losses[r] = libs[r].step(x[4 * r:4 * r + 4], y[4 * r:4 * r + 4])
        threads = [threading.Thread(target=rank, args=(r,)) for r in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        want = ref.step(x, y)
        assert losses[0] == losses[1] == pytest.approx(want, rel=TOLERANCE)  # the global batch's loss
    # every step called each hook once, on the whole bucket (loss + 4 gradients + the row count), rows last
    assert sorted(calls) == sorted([(r, bucket, 4.0) for r in range(2)] * 6)
    assert bucket >= 1 + sum(p.size for p in ref.parameters().values()) + 1
    a, b, want_p = libs[0].parameters(), libs[1].parameters(), ref.parameters()
    for k in want_p:
        np.testing.assert_array_equal(a[k], b[k])  # the same update on every "rank"
        np.testing.assert_allclose(a[k], want_p[k], rtol=TOLERANCE, atol=1e-6)


def test_without_a_hook_the_library_trains_alone(hooked) -> None:
    lib = mlpc.load_library(hooked.library)
    ref = trainer(ragged_model(), batch=4)
    rng = np.random.default_rng(2)
    for _ in range(4):
        x, y = data(rng, 4, 33, 5)
        assert lib.step(x, y) == pytest.approx(ref.step(x, y), rel=1e-6)
    for k, v in ref.parameters().items():
        np.testing.assert_allclose(lib.parameters()[k], v, rtol=1e-5, atol=1e-7)


def test_a_failing_hook_stops_the_step_before_the_update(hooked) -> None:
    lib = mlpc.load_library(hooked.library)
    before = lib.parameters()
    x, y = data(np.random.default_rng(3), 4, 33, 5)

    def broken(buf: np.ndarray) -> None:
        raise RuntimeError("the network is down")
    lib.set_allreduce(broken)
    with pytest.raises(RuntimeError, match="network is down"):
        lib.step(x, y)

    def forgets_the_rows(buf: np.ndarray) -> None:
        buf[:] = 0
    lib.set_allreduce(forgets_the_rows)
    with pytest.raises(MlpcError, match="row count of 0"):
        lib.step(x, y)
    assert lib.steps_taken == 0
    for k, v in before.items():
        np.testing.assert_array_equal(lib.parameters()[k], v)
    lib.set_allreduce(None)
    lib.step(x, y)
    assert lib.steps_taken == 1


def test_libraries_without_the_hook_refuse_it(tmp_path) -> None:
    ex = export(trainer(ragged_model(), batch=4), tmp_path, "plain")
    assert "int plain_set_allreduce(plain_state *state, mlpc_allreduce_fn fn, void *ctx);" in ex.header.read_text()
    with pytest.raises(MlpcError, match="exported without the allreduce hook"):
        mlpc.load_library(ex.library).set_allreduce(lambda buf: None)


def test_dropout_with_the_hook_is_refused(tmp_path) -> None:
    model = nn.Sequential(nn.Linear(33, 17), nn.ReLU(), nn.Dropout(0.2), nn.Linear(17, 5))
    with pytest.raises(MlpcError, match="does not support dropout"):
        export(trainer(model, batch=4), tmp_path, "drop", allreduce_hook=True)


C_PROGRAM = r"""
#include <stdio.h>
#include <string.h>
#include "hooked.h"

typedef struct { int calls; int64_t n; float rows; } seen;

/* Stands in for MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_FLOAT, MPI_SUM, comm) over two identical ranks. */
static void twice(float *buf, int64_t n, void *ctx)
{
    seen *s = (seen *)ctx;
    int64_t i;
    s->calls++;
    s->n = n;
    s->rows = buf[n - 1];
    for (i = 0; i < n; i++)
        buf[i] *= 2.0f;
}

int main(void)
{
    hooked_state *a, *b;
    static float x[HOOKED_BATCH * HOOKED_IN_FEATURES];
    static int32_t y[HOOKED_BATCH];
    seen s = {0, 0, 0.0f};
    float la, lb;
    int i;
    for (i = 0; i < HOOKED_BATCH * HOOKED_IN_FEATURES; i++)
        x[i] = (float)((i * 37) % 11) / 11.0f - 0.5f;
    for (i = 0; i < HOOKED_BATCH; i++)
        y[i] = i % HOOKED_OUT_FEATURES;
    if (hooked_create(&a) || hooked_create(&b) || hooked_set_allreduce(a, twice, &s))
        return 1;
    for (i = 0; i < 3; i++)
        if (hooked_train_step(a, x, y, &la) || hooked_train_step(b, x, y, &lb))
            return 2;
    /* two identical ranks: the mean over both is each one's mean, so a and b must agree */
    printf("calls %d n %lld rows %g same %d loss %g %g\n", s.calls, (long long)s.n, (double)s.rows,
           !memcmp(hooked_buffer(a, "0.weight"), hooked_buffer(b, "0.weight"), sizeof(float) * 33 * 17), la, lb);
    hooked_destroy(a);
    hooked_destroy(b);
    return 0;
}
"""


def test_a_c_program_sets_the_hook(hooked, tmp_path) -> None:
    src = tmp_path / "main.c"
    src.write_text(C_PROGRAM)
    exe = compile_c([src], tmp_path / "main", [hooked.header.parent], [(hooked.library.parent, "hooked")])
    r = run([str(exe)])
    assert r.returncode == 0, r.stderr
    words = r.stdout.split()
    assert words[:8] == ["calls", "3", "n", str(hooked.spec.train_steps[0].bucket[1]), "rows", "4", "same", "1"]
    assert float(words[9]) == pytest.approx(float(words[10]), rel=1e-6)


def test_cli_exports_with_the_hook(tmp_path, capsys) -> None:
    from mlpc.cli import main

    assert main(["aot", "-o", str(tmp_path), "--name", "clihook", "--batch-size", "8", "--threads", "1",
                 "--allreduce-hook"]) == 0
    assert "with the allreduce hook" in capsys.readouterr().out
    lib = mlpc.load_library(tmp_path / "libclihook.so")
    assert lib.manifest["allreduce_hook"] is True
    lib.set_allreduce(lambda buf: None)
