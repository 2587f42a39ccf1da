"""Run in a throwaway process by the AOT loader: open a library and call every entry point once.

Usage: python -I aot_probe.py LIBRARY ABI_VERSION ABI_SYMBOL NAME_SYMBOL SCRATCH_DIR
Prints one JSON report on stdout. Uses only the standard library, so it starts fast. If the library
is damaged so badly that a call crashes, only this process dies and the loader reports it.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from typing import Any


class BufferInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("role", ctypes.c_int32), ("dtype", ctypes.c_int32),
                ("ndim", ctypes.c_int32), ("shape", ctypes.POINTER(ctypes.c_int64)), ("numel", ctypes.c_int64)]


def c_string(lib: ctypes.CDLL, symbol: str) -> bytes:
    return ctypes.string_at(ctypes.addressof(ctypes.c_char.in_dll(lib, symbol)))


def probe(path: str, abi: int, abi_symbol: str, name_symbol: str, scratch: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        lib = ctypes.CDLL(path)
    except OSError as e:
        return {"stage": "dlopen", "error": str(e)}
    try:
        out["abi"] = ctypes.c_uint32.in_dll(lib, abi_symbol).value
    except ValueError:
        return {"stage": "abi"}
    if out["abi"] != abi:
        return out
    try:
        name = c_string(lib, name_symbol).decode()
        manifest = json.loads(c_string(lib, name + "_manifest"))
        names = ["create", "destroy", "last_error", "predict_n", "buffer", "load", "save", "steps", "num_buffers",
                 "buffer_info"] + ([] if manifest["inference_only"] else ["train_step_n"])
        f = {k: getattr(lib, f"{name}_{k}") for k in names}
        batch, width, outs = (int(manifest[k]) for k in ("batch_size", "in_features", "out_features"))
        rows = int(manifest["predict_batch"]) + 1
        buffers = [b["name"] for b in manifest["buffers"]]
    except (ValueError, AttributeError, UnicodeDecodeError, KeyError, TypeError) as e:
        out.update(stage="symbols", error=str(e))
        return out
    vp, i64 = ctypes.c_void_p, ctypes.c_int64
    f["last_error"].restype = ctypes.c_char_p
    f["destroy"].argtypes, f["destroy"].restype = [vp], None
    f["create"].argtypes = [ctypes.POINTER(vp)]
    f["predict_n"].argtypes = [vp, i64, vp, vp]
    f["buffer"].argtypes, f["buffer"].restype = [vp, ctypes.c_char_p], vp
    f["load"].argtypes = f["save"].argtypes = [vp, ctypes.c_char_p]
    f["steps"].argtypes, f["steps"].restype = [vp], i64
    f["buffer_info"].argtypes = [ctypes.c_int, ctypes.POINTER(BufferInfo)]

    def call(stage: str, rc: int) -> bool:
        if rc != 0:
            out.update(stage=stage, rc=rc, error=(f["last_error"]() or b"").decode("utf-8", "replace"))
        return rc == 0

    info = BufferInfo()
    for i in range(f["num_buffers"]()):
        if not call("buffer_info", f["buffer_info"](i, ctypes.byref(info))):
            return out
    state = ctypes.c_void_p()
    if not call("create", f["create"](ctypes.byref(state))):
        return out
    f["steps"](state)
    for b in buffers:
        if not f["buffer"](state, b.encode()):
            call("buffer", -1)
            break
    x = (ctypes.c_float * (max(batch, rows) * width))()
    y = (ctypes.c_float * (max(batch, rows) * outs))()
    ckpt = os.path.join(scratch, "probe.safetensors").encode()
    ok = call("predict", f["predict_n"](state, rows, x, y))
    if ok and "train_step_n" in f:
        f["train_step_n"].argtypes = [vp, i64, vp, vp, vp]
        ok = call("train_step", f["train_step_n"](state, batch, x, (ctypes.c_float * (batch * outs))(), None))
    ok = ok and call("save", f["save"](state, ckpt)) and call("load", f["load"](state, ckpt))
    f["destroy"](state)
    out["ok"] = ok
    return out


if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])))
