"""`mlpc aot`: export a model as a shared library with a C header (and its weights as safetensors)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from codegen.aot.abi import SYSTEM_LIBRARIES
from mlpc.commands import argtypes
from mlpc.commands.common import add_model_args, compile_from_args


def library_name(text: str) -> str:
    """--name: a C identifier that does not name a system library."""
    from codegen.aot.abi import check_library_name
    from mlpc.errors import MlpcError

    try:
        check_library_name(text)
    except MlpcError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def register(sub: Any) -> None:
    p = sub.add_parser("aot", help="export a model as libNAME.so + NAME.h (C ABI, no Python at run time)")
    add_model_args(p, default_backend="numpy")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--name", type=library_name, default=None,
                   help="library name, a C identifier that is not a system library's (m, c, pthread, ...); "
                        "default: the model file's name")
    p.add_argument("--inference", action="store_true", help="predict only: leave out backward and optimizer")
    p.add_argument("--weights", default=None, help="start from this checkpoint (Trainer.save / mlpc train --save)")
    p.add_argument("--generic", action="store_true", help="baseline x86-64 code (SSE2; no AVX, AVX2, AVX-512)")
    p.add_argument("--cpu", default=None, help="LLVM cpu name to compile for (default: this machine's)")
    p.add_argument("--features", default=None,
                   help='LLVM features for --cpu, e.g. "+avx,+avx2,+fma" (sets the vector width and the CPU check)')
    p.add_argument("--threads", type=argtypes.int_range(1, 1024), default=None,  # codegen.llvm.target.MAX_THREADS
                   help="worker threads compiled into the step (1 to 1024)")
    p.add_argument("--train-batch", type=argtypes.batch_size, action="append", default=[],
                   help="also compile a training step for this many rows (repeatable), e.g. an epoch's last batch")
    p.add_argument("--predict-batch", type=argtypes.batch_size, default=None,
                   help="rows per predict call (default: batch size)")
    p.add_argument("--keep-sources", action="store_true",
                   help="keep the generated C, assembly, LLVM IR and object files")
    p.add_argument("--allreduce-hook", action="store_true",
                   help="split each training step so NAME_set_allreduce's function can sum the gradients over "
                        "the ranks of your own MPI job before the update (docs/distributed.md)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from codegen.aot.abi import library_name_for
    from mlpc.checkpoint import load_arrays
    from runtime.aot_export import export

    trainer = compile_from_args(args)
    if args.weights:
        tensors, _meta = load_arrays(args.weights)
        trainer.load_state({k.split("/", 1)[1]: v for k, v in tensors.items()})
    name = args.name or (library_name_for(os.path.splitext(os.path.basename(args.model))[0]) if args.model
                         else "mlp")
    if name in SYSTEM_LIBRARIES:  # only a name taken from the model file's name gets here
        print(f"note: lib{name}.so would shadow the system library lib{name}; naming the library model_{name}")
        name = f"model_{name}"
    result = export(trainer, args.output, name, inference=args.inference, generic=args.generic, cpu=args.cpu,
                    features=args.features, threads=args.threads, train_batches=args.train_batch,
                    predict_batch=args.predict_batch, keep_sources=args.keep_sources,
                    allreduce_hook=args.allreduce_hook)
    spec = result.spec
    what = "inference only" if spec.inference_only else \
        f"training batches {', '.join(str(s.batch) for s in spec.train_steps)}" + \
        (" with the allreduce hook" if spec.allreduce_hook else "")
    print(f"exported {name} in {result.seconds:.2f} s: {what}, predict batch {spec.predict_step.batch}")
    print(f"  target   {spec.target.summary()}")
    print(f"  ir hash  {spec.ir_hash}")
    for label, path in (("library", result.library), ("header", result.header), ("weights", result.weights),
                        *(("source", s) for s in result.sources)):
        print(f"  {label:8} {path} ({os.path.getsize(path)} bytes)")
    out = os.path.abspath(args.output)
    print(f"  build    cc -I{out} prog.c -L{out} -l{name} -Wl,-rpath,{out} -lm   (API: {result.header.name}, "
          f"docs/aot.md)")
    return 0
