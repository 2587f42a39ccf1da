"""What one exported library holds: its buffers, its compiled steps and where their results land."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from codegen.aot.abi import ABI_VERSION


@dataclass(frozen=True)
class Loc:
    """A byte location in a step's argument table: `(char *)args[arg] + offset` (arg 0 is the arena)."""

    arg: int
    offset: int


@dataclass(frozen=True)
class BufferSpec:
    """A parameter or optimizer-state buffer the library owns."""

    name: str
    role: str               # "param" | "state" | "hyper"
    dtype: str              # "f32" | "i32"
    shape: tuple[int, ...]

    @property
    def key(self) -> str:
        return f"{self.role}/{self.name}"

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass
class StepSpec:
    """One compiled step function: `void symbol(void **args)`, args[1 + i] = buffer of `inputs[i]`."""

    kind: str                       # "train" | "predict"
    batch: int
    symbol: str
    inputs: list[str]               # "x", "y" or buffer names, in argument order
    arena: int                      # bytes of scratch the step needs
    out: Loc                        # the loss (train) or logits (predict)
    label_classes: int = 0          # > 0: y holds class labels checked against [0, classes)
    threads: int = 1
    arena_at: int = 0               # where this step's arena starts in the state's scratch memory
    arena_inputs: dict[str, int] = field(default_factory=dict)  # input -> byte offset in the scratch memory
    update: "StepSpec | None" = None  # the allreduce hook splits a train step: this runs after the hook
    bucket: tuple[int, int] = (0, 0)  # (byte offset, f32 count) the hook reduces: partial values, row count last

    @property
    def all_steps(self) -> list["StepSpec"]:
        return [self] + ([self.update] if self.update is not None else [])


@dataclass
class TargetSpec:
    triple: str
    cpu: str
    features: str
    lanes: int
    threads: int
    ftz: bool
    precision: str = "fp32"  # matmul precision (mlpc.precision): bf16 libraries say so in their target string

    def summary(self) -> str:
        prec = f" precision={self.precision}" if self.precision != "fp32" else ""
        return f"{self.triple} cpu={self.cpu} lanes={self.lanes} threads={self.threads} ftz={int(self.ftz)}{prec}"


@dataclass
class LibrarySpec:
    """Everything the header and glue generators need."""

    name: str
    buffers: list[BufferSpec]
    steps: list[StepSpec]
    batch_size: int                 # rows per NAME_train_step (the predict batch when inference-only)
    in_features: int
    out_features: int
    loss: str                       # "cross_entropy" | "mse"
    target: TargetSpec
    ir_hash: str
    inference_only: bool
    checkpoint_meta: dict[str, str]  # fixed metadata of checkpoints the library saves
    model_spec: Any = None
    optimizer_spec: Any = None
    mlpc_version: str = ""
    abi_version: int = ABI_VERSION
    allreduce_hook: bool = False    # train steps call NAME_set_allreduce's function between backward and update

    @property
    def train_steps(self) -> list[StepSpec]:
        return sorted((s for s in self.steps if s.kind == "train"), key=lambda s: s.batch)

    @property
    def predict_step(self) -> StepSpec:
        return [s for s in self.steps if s.kind == "predict"][0]

    @property
    def arena_bytes(self) -> int:
        return max(t.arena_at + t.arena for s in self.steps for t in s.all_steps)

    @property
    def symbols(self) -> list["StepSpec"]:
        """Every compiled step function, the update halves of split train steps included."""
        return [t for s in self.steps for t in s.all_steps]

    def buffer_index(self, name: str) -> int:
        return [b.name for b in self.buffers].index(name)

    def manifest(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "abi_version": self.abi_version,
            "mlpc_version": self.mlpc_version,
            "ir_hash": self.ir_hash,
            "inference_only": self.inference_only,
            "in_features": self.in_features,
            "out_features": self.out_features,
            "loss": self.loss,
            "batch_size": self.batch_size,
            "train_batches": [s.batch for s in self.train_steps],
            "predict_batch": self.predict_step.batch,
            "target": {"triple": self.target.triple, "cpu": self.target.cpu, "features": self.target.features,
                       "lanes": self.target.lanes, "threads": self.target.threads, "ftz": self.target.ftz},
            "buffers": [{"name": b.name, "role": b.role, "dtype": b.dtype, "shape": list(b.shape)}
                        for b in self.buffers],
            "model": self.model_spec,
            "optimizer": self.optimizer_spec,
            "allreduce_hook": self.allreduce_hook,
        }

    def manifest_json(self) -> str:
        return json.dumps(self.manifest(), sort_keys=True)
