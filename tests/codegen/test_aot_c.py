"""The generated C: several models in one program, and the safetensors reader against damaged files."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from safetensors.numpy import save

import mlpc
from codegen.aot.glue import c_string
from mlpc import nn, optim
from mlpc.checkpoint import save_arrays
from mlpc.errors import CheckpointError
from tests.aot_util import compile_c, export, ragged_model, run, trainer


@pytest.fixture(scope="module")
def ragged(tmp_path_factory):
    out = tmp_path_factory.mktemp("c_ragged")
    tr = trainer(ragged_model(), batch=7, backend="numpy")
    ex = export(tr, out, "rag", threads=1)
    return tr, ex, mlpc.load_library(ex.library)


def _checkpoint(tr, **replace) -> dict[str, np.ndarray]:
    tensors = {f"param/{k}": v for k, v in tr.parameters().items()}
    tensors.update({f"state/{k}": v for k, v in tr.optimizer_state().items()})
    tensors.update(replace)
    return {k: v for k, v in tensors.items() if v is not None}


def _raw(tensors: dict[str, np.ndarray], header: dict | None = None) -> bytes:
    """A safetensors file with a hand-made header (for layouts the writers never produce)."""
    data = b""
    desc: dict = dict(header or {})
    for k, v in tensors.items():
        b = np.ascontiguousarray(v).tobytes()
        desc.setdefault(k, {"dtype": {"float32": "F32", "int32": "I32"}[str(v.dtype)], "shape": list(v.shape),
                            "data_offsets": [len(data), len(data) + len(b)]})
        data += b
    text = json.dumps(desc).encode()
    return struct.pack("<Q", len(text)) + text + data


def test_c_string_literals_round_trip():
    text = 'a "quoted" \\ back?slash\n tab\t é ☃ 𝄞' * 5
    literal = c_string(text, width=7)
    body = "".join(chunk[1:-1] for chunk in literal.split("\n    "))
    assert "??" not in body and "\n" not in body
    assert body.encode().decode("unicode_escape").encode("latin-1").decode() == text


def test_two_models_in_one_c_program(tmp_path):
    a = export(trainer(ragged_model(), batch=7, backend="numpy"), tmp_path, "model_a", threads=1)
    b_tr = trainer(nn.Sequential(nn.Linear(9, 13), nn.Tanh(), nn.Linear(13, 4)), nn.MSELoss(),
                   optim.SGD(lr=0.1), batch=5, backend="numpy")
    b = export(b_tr, tmp_path, "model_b", threads=1)
    src = tmp_path / "both.c"
    src.write_text("""
#include <stdio.h>
#include "model_a.h"
#include "model_b.h"
int main(void) {
    float xa[3 * MODEL_A_IN_FEATURES], oa[3 * MODEL_A_OUT_FEATURES];
    float xb[MODEL_B_BATCH * MODEL_B_IN_FEATURES], yb[MODEL_B_BATCH * MODEL_B_OUT_FEATURES], ob[MODEL_B_OUT_FEATURES];
    float loss;
    model_a_state *a; model_b_state *b;
    int i;
    for (i = 0; i < 3 * MODEL_A_IN_FEATURES; i++) xa[i] = (float)(i % 7) / 7.0f;
    for (i = 0; i < MODEL_B_BATCH * MODEL_B_IN_FEATURES; i++) xb[i] = (float)(i % 5) / 5.0f;
    for (i = 0; i < MODEL_B_BATCH * MODEL_B_OUT_FEATURES; i++) yb[i] = 0.5f;
    if (model_a_create(&a) || model_b_create(&b)) return 1;
    if (model_a_predict_n(a, 3, xa, oa) || model_b_train_step(b, xb, yb, &loss) || model_b_predict_n(b, 1, xb, ob))
        return 2;
    if (model_a_train_step_n(a, 5, xa, NULL, &loss) != MLPC_E_ARGUMENT) return 3;
    printf("%s\\n", model_a_last_error());
    for (i = 0; i < 3 * MODEL_A_OUT_FEATURES; i++) printf("%.9g\\n", oa[i]);
    for (i = 0; i < MODEL_B_OUT_FEATURES; i++) printf("%.9g\\n", ob[i]);
    printf("%s %s %d\\n", model_a_ir_hash, model_b_ir_hash, model_a_abi_version == MODEL_A_ABI_VERSION);
    model_a_destroy(a); model_b_destroy(b);
    return 0;
}
""")
    exe = compile_c([src], tmp_path / "both", [tmp_path], [(tmp_path, "model_a"), (tmp_path, "model_b")])
    r = run([str(exe)])
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert "model_a_train_step: state, x and y must not be NULL" in lines[0]
    xa = (np.arange(3 * 33) % 7).astype(np.float32).reshape(3, 33) / np.float32(7)
    xb = (np.arange(5 * 9) % 5).astype(np.float32).reshape(5, 9) / np.float32(5)
    lib_b = mlpc.load_library(b.library)
    lib_b.step(xb, np.full((5, 4), 0.5, np.float32))
    want = np.concatenate([mlpc.load_library(a.library).predict(xa).ravel(), lib_b.predict(xb[:1]).ravel()])
    np.testing.assert_allclose([float(v) for v in lines[1:1 + len(want)]], want, rtol=1e-6)
    assert lines[-1] == f"{a.spec.ir_hash} {b.spec.ir_hash} 1"


def test_reader_accepts_what_the_writers_write(ragged, tmp_path):
    tr, _ex, lib = ragged
    # plain safetensors (no metadata, no checksum), a scalar stored as []
    plain = _checkpoint(tr, **{"state/t": np.array(3, np.int32)})
    (tmp_path / "plain.safetensors").write_bytes(save(plain))
    lib.load(tmp_path / "plain.safetensors")
    assert int(lib.optimizer_state()["t"]) == 3
    # an mlpc checkpoint with awkward metadata: escapes, non-ASCII, surrogate pairs, long values
    meta = {"note": 'é ☃ 𝄞 "quoted" \\ \n\t\u0001', "long": "x" * 100000, "mlpc.steps": "12"}
    save_arrays(str(tmp_path / "meta.safetensors"), _checkpoint(tr), meta)
    lib.load(tmp_path / "meta.safetensors")
    assert lib.steps_taken == 12
    for k, v in tr.parameters().items():
        np.testing.assert_array_equal(lib.parameters()[k], v)


@pytest.mark.parametrize("case, match", [
    ("missing", "lacks tensor 'param/0.bias'"),
    ("extra", "holds tensor 'param/extra', which this model does not have"),
    ("shape", "'param/0.bias' does not have the model's shape"),
    ("dtype", "'param/0.bias' is F64, the model's is F32"),
    ("checksum", "failed its checksum"),
    ("long_header", "truncated or corrupt .header of"),
    ("offsets", "has data offsets"),
    ("twice", "names tensor 'param/0.bias' twice"),
    ("trailing", "bytes after the header JSON"),
    ("not_object", "not a JSON object"),
    ("short", "not a safetensors file"),
    ("bad_escape", "bad tensor name"),
    ("unknown_dtype", "unsupported dtype"),
])
def test_reader_refuses_damaged_checkpoints(ragged, tmp_path, case, match):
    tr, _ex, lib = ragged
    before = {**lib.parameters(), **lib.optimizer_state()}
    path = tmp_path / f"{case}.safetensors"
    good = _checkpoint(tr)
    if case in ("missing", "extra", "shape", "dtype"):
        edit = {"missing": {"param/0.bias": None}, "extra": {"param/extra": np.ones(2, np.float32)},
                "shape": {"param/0.bias": np.ones(16, np.float32)},
                "dtype": {"param/0.bias": np.ones(17, np.float64)}}[case]
        save_arrays(str(path), _checkpoint(tr, **edit), {})
    else:
        save_arrays(str(path), good, {})
        blob = bytearray(path.read_bytes())
        hlen = struct.unpack_from("<Q", blob)[0]
        if case == "checksum":
            blob[-1] ^= 1
        elif case == "long_header":
            struct.pack_into("<Q", blob, 0, len(blob))
        elif case == "short":
            blob = blob[:5]
        else:
            header = json.loads(blob[8:8 + hlen])
            tensors = {k: v for k, v in good.items()}
            if case == "offsets":
                header["param/0.bias"]["data_offsets"][1] += 4
                blob = bytearray(_raw(tensors, header))
            elif case == "unknown_dtype":
                header["param/0.bias"]["dtype"] = "Q7"
                blob = bytearray(_raw(tensors, header))
            else:
                raw = bytes(_raw(tensors))
                n = struct.unpack_from("<Q", raw)[0]
                text = raw[8:8 + n].decode()
                text = {"twice": lambda t: t[:-1] + ', "param/0.bias": ' + json.dumps(
                            json.loads(t)["param/0.bias"]) + "}",
                        "trailing": lambda t: t + " x",
                        "not_object": lambda t: "[" + t[1:-1] + "]",
                        "bad_escape": lambda t: t.replace('"param/0.bias"', '"param/0.\\qbias"')}[case](text)
                blob = bytearray(struct.pack("<Q", len(text.encode())) + text.encode() + raw[8 + n:])
        path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match=match):
        lib.load(path)
    after = {**lib.parameters(), **lib.optimizer_state()}
    for k, v in before.items():  # a failed load changes nothing
        np.testing.assert_array_equal(after[k], v)


def test_reader_survives_random_damage(ragged, tmp_path):
    """Random byte flips and truncations of a checkpoint: every load either succeeds (damage in metadata
    the reader skips) or raises CheckpointError and leaves the weights unchanged."""
    tr, _ex, lib = ragged
    save_arrays(str(tmp_path / "good.safetensors"), _checkpoint(tr), {"mlpc.model": json.dumps({"a": [1, 2]})})
    good = (tmp_path / "good.safetensors").read_bytes()
    hlen = struct.unpack_from("<Q", good)[0]
    rng = np.random.default_rng(11)
    refused = 0
    for i in range(300):
        blob = bytearray(good)
        if i % 5 == 0:
            blob = blob[:int(rng.integers(0, len(good)))]
        else:
            for pos in rng.integers(0, 8 + hlen + 64, 1 + i % 3):
                blob[min(pos, len(blob) - 1)] = int(rng.integers(0, 256))
        path = tmp_path / "fuzz.safetensors"
        path.write_bytes(bytes(blob))
        before = lib.parameters()
        try:
            lib.load(path)
        except CheckpointError as e:
            refused += 1
            assert str(e)
            for k, v in before.items():
                np.testing.assert_array_equal(lib.parameters()[k], v)
    assert refused > 200


def test_reader_limits_the_number_of_tensors(ragged, tmp_path):
    _tr, _ex, lib = ragged
    header = {f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(70000)}
    text = json.dumps(header).encode()
    (tmp_path / "many.safetensors").write_bytes(struct.pack("<Q", len(text)) + text)
    with pytest.raises(CheckpointError, match="more than 65536 tensors"):
        lib.load(tmp_path / "many.safetensors")


def test_states_used_from_two_threads_at_once(tmp_path):
    """Distinct states of one library trained concurrently from two POSIX threads give exactly the
    losses of training them one after the other (the worker pool serializes steps, nothing is shared)."""
    tr = trainer(nn.Sequential(nn.Linear(200, 300), nn.ReLU(), nn.Linear(300, 10)), batch=256, backend="numpy")
    ex = export(tr, tmp_path, "par", threads=2)
    assert ex.spec.train_steps[0].threads == 2  # the step really runs on the worker pool
    src = tmp_path / "par.c"
    src.write_text("""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include "par.h"
#define STEPS 20
static float x[PAR_BATCH * PAR_IN_FEATURES];
static int32_t y[PAR_BATCH];
typedef struct { par_state *s; float loss[STEPS]; int rc; } job;
static void *train(void *arg) {
    job *j = arg;
    for (int i = 0; i < STEPS && !j->rc; i++) j->rc = par_train_step(j->s, x, y, &j->loss[i]);
    return NULL;
}
int main(void) {
    job a = {0}, b = {0}, c = {0};
    pthread_t ta, tb;
    for (int i = 0; i < PAR_BATCH * PAR_IN_FEATURES; i++) x[i] = (float)((i * 7919) % 1000) / 500.0f - 1.0f;
    for (int i = 0; i < PAR_BATCH; i++) y[i] = i % PAR_OUT_FEATURES;
    if (par_create(&a.s) || par_create(&b.s) || par_create(&c.s)) return 1;
    train(&c);                                   /* sequential reference */
    pthread_create(&ta, NULL, train, &a);
    pthread_create(&tb, NULL, train, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    if (a.rc || b.rc || c.rc) { fprintf(stderr, "%s\\n", par_last_error()); return 2; }
    for (int i = 0; i < STEPS; i++)
        if (a.loss[i] != c.loss[i] || b.loss[i] != c.loss[i]) { printf("differ at %d\\n", i); return 3; }
    printf("ok %.6f %.6f\\n", c.loss[0], c.loss[STEPS - 1]);
    par_destroy(a.s); par_destroy(b.s); par_destroy(c.s);
    return 0;
}
""")
    exe = compile_c([src], tmp_path / "par", [tmp_path], [(tmp_path, "par")], ["-std=c11", "-O2", "-pthread"])
    for _ in range(3):
        r = run([str(exe)])
        assert r.returncode == 0, r.stdout + r.stderr
        first, last = map(float, r.stdout.split()[1:])
        assert last < first
