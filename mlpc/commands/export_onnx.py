"""`mlpc export-onnx`: write a model's inference graph (optionally with a checkpoint's weights) as ONNX."""

from __future__ import annotations

import argparse
import os
from typing import Any

from mlpc.commands import argtypes
from mlpc.commands.common import add_model_args, compile_from_args


def register(sub: Any) -> None:
    p = sub.add_parser("export-onnx", help="write the inference graph as an ONNX file (needs the interop extra)")
    add_model_args(p, default_backend="numpy")
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    p.add_argument("--checkpoint", default=None, help="take the weights from this checkpoint (Trainer.save / "
                                                      "mlpc train --save)")
    p.add_argument("--dynamic-batch", action="store_true", help="leave the batch dimension open (default: "
                                                                 "the batch size)")
    p.add_argument("--softmax", action="store_true", help="add an output `probabilities` (softmax of `logits`)")
    p.add_argument("--opset", type=argtypes.int_range(17, None), default=17,
                   help="ONNX opset, 17 up to the installed onnx package's newest (default 17)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mlpc.checkpoint import load_arrays

    trainer = compile_from_args(args)
    if args.checkpoint:
        tensors, _meta = load_arrays(args.checkpoint)
        params = {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith("param/")}
        trainer.load_state_dict(params, layout="mlpc")
    try:
        trainer.export_onnx(args.output, softmax=args.softmax, dynamic_batch=args.dynamic_batch, opset=args.opset)
    except ValueError as e:
        from mlpc.errors import MlpcError

        raise MlpcError(str(e)) from None
    batch = "dynamic" if args.dynamic_batch else str(trainer.batch_size)
    outputs = "logits, probabilities" if args.softmax else "logits"
    print(f"wrote {args.output} ({os.path.getsize(args.output)} bytes): opset {args.opset}, input x "
          f"[{batch}, {trainer.in_features}], outputs {outputs}")
    return 0
