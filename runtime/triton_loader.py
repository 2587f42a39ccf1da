"""Writes generated Triton source to the compile cache, imports it, and compiles it ahead of time."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from codegen.triton_render import Launch
from codegen.views import View

SHARED_MEMORY_LIMIT = 232448  # bytes per block on sm_90 (H100/H200)


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def cache_dir() -> Path:
    root = os.environ.get("MLPC_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "mlpc")
    path = Path(root) / "triton"
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_module(source: str, aot: bool = False) -> ModuleType:
    """Import `source` from a real .py file named by its hash (Triton refuses exec'd source).

    With `aot`, the kernels are compiled-mode JITFunctions for `aot_compile` even in a process
    running Triton's interpreter (the decorator reads TRITON_INTERPRET when it runs)."""
    if interpreting() and not aot:
        _patch_interpreter()
    digest = hashlib.sha256(source.encode()).hexdigest()[:20]
    name = f"mlpc_triton_{digest}" + ("_aot" if aot else "")
    if name in sys.modules:
        return sys.modules[name]
    path = cache_dir() / f"{name}.py"
    if not path.exists() or path.read_text() != source:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(source)
        os.replace(tmp, path)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    saved = os.environ.get("TRITON_INTERPRET")
    if aot:
        os.environ["TRITON_INTERPRET"] = "0"
    try:
        spec.loader.exec_module(module)
    finally:
        if aot:
            if saved is None:
                del os.environ["TRITON_INTERPRET"]
            else:
                os.environ["TRITON_INTERPRET"] = saved
    sys.modules[name] = module
    return module


_PATCHED = False


def _patch_interpreter() -> None:
    """triton 3.6's interpreter turns a runtime loop bound into an int with int(1-element array),
    which numpy >= 2.4 rejects; give its tensors an __index__ that takes the element first."""
    global _PATCHED
    if _PATCHED:
        return
    from triton.runtime import interpreter

    original = getattr(interpreter, "_patch_lang_tensor", None)
    if original is None:  # another triton version: nothing to patch
        _PATCHED = True
        return

    def patched(tensor: Any, scope: Any) -> None:
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    interpreter._patch_lang_tensor = patched
    _PATCHED = True


def aot_spec(launch: Launch) -> dict[str, Any]:
    """How the JIT would specialize this launch (ints equal to 1 become constants; 16-divisible
    ints and 16-byte aligned pointers get divisibility hints), as JSON-able data."""
    signature: dict[str, str] = {}
    constexprs: dict[str, Any] = dict(launch.constexprs)
    divisible: list[int] = []
    full = launch.signature()
    for i, (pname, arg) in enumerate(launch.args):
        if isinstance(arg, View):
            signature[pname] = full[pname]
            if (arg.offset * arg.dtype.itemsize) % 16 == 0:
                divisible.append(i)
        elif arg == 1:
            signature[pname] = "constexpr"
            constexprs[pname] = 1
        else:
            signature[pname] = "i32"
            if arg % 16 == 0:
                divisible.append(i)
    for c in launch.constexprs:
        signature[c] = "constexpr"
    return {"name": launch.name, "signature": signature, "constexprs": constexprs, "divisible": divisible,
            "num_warps": launch.num_warps, "num_stages": launch.num_stages}


def compile_spec(module: ModuleType, spec: dict[str, Any], capability: int = 90) -> Any:
    """triton.compile one specialized kernel for CUDA `capability`; needs no GPU."""
    import triton
    from triton.backends.compiler import BaseBackend, GPUTarget
    from triton.compiler import ASTSource

    attrs = {(i,): BaseBackend.parse_attr("D") for i in spec["divisible"]}
    src = ASTSource(fn=getattr(module, spec["name"]), signature=spec["signature"],
                    constexprs=spec["constexprs"], attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", capability, 32),
                          options={"num_warps": spec["num_warps"], "num_stages": spec["num_stages"]})


def aot_compile_many(source: str, launches: list[Launch], capability: int = 90) -> list[dict[str, Any]]:
    """Compile launches of one module ahead of time; each result has ttir, ptx, shared (bytes),
    registers and local (spill bytes), or error. A process running Triton's interpreter cannot
    also compile (tl.* helpers are bound to the interpreter), so then a child process does it."""
    specs = [aot_spec(la) for la in launches]
    if not interpreting():
        return compile_specs(source, specs, capability)
    import json
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    payload = json.dumps({"source": source, "specs": specs, "capability": capability})
    proc = subprocess.run([sys.executable, "-m", "runtime.triton_loader"], input=payload, capture_output=True,
                          text=True, env=env, cwd=root)
    if proc.returncode != 0:
        raise RuntimeError(f"ahead-of-time compile failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def compile_specs(source: str, specs: list[dict[str, Any]], capability: int) -> list[dict[str, Any]]:
    module = load_module(source, aot=True)
    results: list[dict[str, Any]] = []
    for spec in specs:
        try:
            c = compile_spec(module, spec, capability)
        except Exception as e:  # reported per kernel
            results.append({"name": spec["name"], "error": f"{type(e).__name__}: {e}"})
            continue
        usage = resource_usage(c.asm["cubin"])
        results.append({"name": spec["name"], "ttir": c.asm["ttir"], "ptx": c.asm["ptx"],
                        "shared": int(c.metadata.shared), **usage})
    return results


def resource_usage(cubin: bytes) -> dict[str, int]:
    """Registers and spill bytes of a cubin, read with the cuobjdump that ships with Triton."""
    import re
    import subprocess
    import tempfile

    import triton

    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        text = subprocess.run([str(tool), "--dump-resource-usage", f.name], capture_output=True,
                              text=True, check=True).stdout
    regs = re.search(r"REG:(\d+)", text)
    local = re.search(r"LOCAL:(\d+)", text)
    return {"registers": int(regs.group(1)) if regs else -1, "local": int(local.group(1)) if local else -1}


if __name__ == "__main__":  # the child process of aot_compile_many
    import json

    job = json.loads(sys.stdin.read())
    print(json.dumps(compile_specs(job["source"], job["specs"], job["capability"])))
