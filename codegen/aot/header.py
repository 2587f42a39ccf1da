"""Renders NAME.h, the C header of an exported library."""

from __future__ import annotations

from codegen.aot.abi import STATUS
from codegen.aot.spec import LibrarySpec

_COMMON = """\
#ifndef MLPC_COMMON_DEFINED
#define MLPC_COMMON_DEFINED
/* Shared by every mlpc-exported header, so several models can be used from one program. */
typedef enum mlpc_status {
@STATUS@
} mlpc_status;

typedef enum mlpc_dtype { MLPC_F32 = 0, MLPC_I32 = 1 } mlpc_dtype;
typedef enum mlpc_role { MLPC_PARAM = 0, MLPC_STATE = 1, MLPC_HYPER = 2 } mlpc_role;

/* One parameter or optimizer-state buffer: the tensor "param/<name>" or "state/<name>" of a
 * checkpoint. Buffers are C-contiguous (row-major), 64-byte aligned, and owned by the state. */
typedef struct mlpc_buffer_info {
    const char *name;        /* e.g. "0.weight" (a Linear's weight is [in, out]: y = x W + b) */
    int32_t role;            /* mlpc_role */
    int32_t dtype;           /* mlpc_dtype */
    int32_t ndim;
    const int64_t *shape;    /* ndim entries */
    int64_t numel;
} mlpc_buffer_info;
#endif

#ifndef MLPC_ALLREDUCE_DEFINED
#define MLPC_ALLREDUCE_DEFINED
/* NAME_set_allreduce's function: sum the n floats at buf over the ranks of the caller's data-parallel
 * job, in place (e.g. MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_FLOAT, MPI_SUM, comm)). */
typedef void (*mlpc_allreduce_fn)(float *buf, int64_t n, void *ctx);
#endif
"""


def render_header(spec: LibrarySpec) -> str:
    n = spec.name
    N = n.upper()
    ce = spec.loss == "cross_entropy"
    ytype = "int32_t" if ce else "float"
    ydoc = (f"y: {N}_BATCH int32 class labels in [0, {N}_OUT_FEATURES)" if ce
            else f"y: {N}_BATCH x {N}_OUT_FEATURES float targets (row-major)")
    status = ",\n".join(f"    {k} = {v}" for k, v in STATUS.items())
    t = spec.target
    trains = ", ".join(str(s.batch) for s in spec.train_steps)
    lines = [
        f"/* {n}.h: C API of an MLP compiled ahead of time by mlpc {spec.mlpc_version}.",
        " *",
        f" * Model IR hash {spec.ir_hash}",
        f" * Target {t.triple}, cpu {t.cpu}, {t.lanes} f32 lanes, {t.threads} thread(s), "
        f"flush-to-zero {'on' if t.ftz else 'off'}.",
        f" * {'Inference only.' if spec.inference_only else 'Training step batch sizes: ' + trains + '.'}",
        " *",
        " * Conventions: functions return MLPC_OK (0) or an mlpc_status code; after a failure",
        f" * {n}_last_error() describes it (per thread).",
        " *",
        " * Threads: a state must not be used by two threads at once (guard each state with your own",
        " * mutex; mlpc.load_library does). Distinct states may be used from different threads at once",
        " * (their steps take turns on the library's worker pool). fork: the child may go on using the",
        " * states it inherited, even if a parent thread was inside a call (the child restarts the pool;",
        " * the state that call was updating may be half-updated in the child).",
        " * Link with -l" + n + " (and -lm).",
        " */",
        f"#ifndef {N}_H",
        f"#define {N}_H",
        "",
        "#include <stddef.h>",
        "#include <stdint.h>",
        "",
        "#ifdef __cplusplus",
        'extern "C" {',
        "#endif",
        "",
        _COMMON.replace("@STATUS@", status),
        f"#define {N}_ABI_VERSION {spec.abi_version}",
        f'#define {N}_IR_HASH "{spec.ir_hash}"',
        f'#define {N}_TARGET_TRIPLE "{t.triple}"',
        f'#define {N}_TARGET_CPU "{t.cpu}"',
        f"#define {N}_IN_FEATURES {spec.in_features}",
        f"#define {N}_OUT_FEATURES {spec.out_features}",
        f"#define {N}_BATCH {spec.batch_size}            /* rows per "
        f"{'prediction batch (inference only)' if spec.inference_only else n + '_train_step'} */",
        f"#define {N}_PREDICT_BATCH {spec.predict_step.batch}    /* rows per {n}_predict */",
        f"#define {N}_NUM_BUFFERS {len(spec.buffers)}",
        f"#define {N}_INFERENCE_ONLY {int(spec.inference_only)}",
        "",
        f"/* The opaque model state: parameters{'' if spec.inference_only else ', optimizer state'} "
        "and scratch memory. */",
        f"typedef struct {n}_state {n}_state;",
        "",
        f"/* Symbols: the ABI version the library was built with (compare with {N}_ABI_VERSION), the",
        " * SHA-256 of the model's IR, the target description, a JSON manifest of the library and the",
        " * manifest's SHA-256 (checked by loaders). */",
        f"extern const uint32_t {n}_abi_version;",
        f"extern const char {n}_ir_hash[];",
        f"extern const char {n}_target[];",
        f"extern const char {n}_manifest[];",
        f"extern const char {n}_manifest_sha256[];",
        "",
        "/* The message of the last failed call on this thread (\"\" if none). */",
        f"const char *{n}_last_error(void);",
        "",
        "/* Creates a state holding the weights the library was exported with (checked against their",
        " * checksum). Fails with MLPC_E_CPU on a CPU without the instructions the code was compiled for. */",
        f"int {n}_create({n}_state **out);",
        f"void {n}_destroy({n}_state *state);",
        "",
    ]
    if not spec.inference_only:
        lines += [
            f"/* One training step (forward, loss, backward, optimizer update) on {N}_BATCH rows.",
            f" * x: {N}_BATCH x {N}_IN_FEATURES floats (row-major); {ydoc}.",
            " * *loss (may be NULL) receives the batch's mean loss. MLPC_E_NUMERIC when it is NaN/Inf",
            " * (the update has been applied, as in the Python trainer). */",
            f"int {n}_train_step({n}_state *state, const float *x, const {ytype} *y, float *loss);",
            "",
            f"/* The same for n rows; n must be one of the batch sizes the library was built for ({trains}). */",
            f"int {n}_train_step_n({n}_state *state, int64_t n, const float *x, const {ytype} *y, float *loss);",
            "",
            "/* Runtime hyperparameters of the training step (buffers of role MLPC_HYPER, saved as",
            " * \"hyper/<name>\"): name is \"lr\", \"momentum\", \"beta\", \"beta1\", \"beta2\" or \"weight_decay\"",
            " * (every parameter group's), or a buffer name such as \"hyper.g1.lr\" (one group's). The next step",
            " * uses the value; nothing is recompiled. set: MLPC_E_ARGUMENT for an unknown name or a value",
            " * out of range (negative, not finite, a beta outside [0, 1)). get: the first matching buffer's. */",
            f"int {n}_set_hyper({n}_state *state, const char *name, double value);",
            f"int {n}_get_hyper(const {n}_state *state, const char *name, double *value);",
            "",
            "/* Data-parallel training with the caller's own MPI (a library exported with the allreduce hook;",
            " * others return MLPC_E_UNSUPPORTED): every train step, once the gradients are complete and",
            " * before the optimizer update, calls fn(buf, n, ctx) on one contiguous buffer of n floats: the",
            " * loss and every gradient, each times this process's rows, then the row count. fn must sum buf",
            " * over the ranks in place; the step then divides by the summed row count, so the update (the",
            " * same on every rank) and *loss are those of the whole global batch. fn = NULL: no reduction.",
            f" * This library was exported {'with' if spec.allreduce_hook else 'without'} the hook. */",
            f"int {n}_set_allreduce({n}_state *state, mlpc_allreduce_fn fn, void *ctx);",
            "",
        ]
    lines += [
        f"/* Model outputs (logits) for {N}_PREDICT_BATCH rows: out gets {N}_PREDICT_BATCH x {N}_OUT_FEATURES. */",
        f"int {n}_predict({n}_state *state, const float *x, float *out);",
        "",
        f"/* Model outputs for any n >= 0 rows (run in chunks of {N}_PREDICT_BATCH, the last one padded). */",
        f"int {n}_predict_n({n}_state *state, int64_t n, const float *x, float *out);",
        "",
        f"/* The buffer table: {N}_NUM_BUFFERS entries, index 0 .. {N}_NUM_BUFFERS - 1. */",
        f"int {n}_num_buffers(void);",
        f"int {n}_buffer_info(int index, mlpc_buffer_info *info);",
        "",
        "/* A buffer's memory inside the state, by name (\"0.weight\" or \"param/0.weight\"), for reading or",
        " * writing weights in place; NULL (and an error message) for an unknown name. */",
        f"void *{n}_buffer({n}_state *state, const char *name);",
        "",
        "/* Loads/saves weights in the mlpc checkpoint format (safetensors, tensors \"param/<name>\"",
        " * and \"state/<name>\", SHA-256 checksum in the metadata), the file Trainer.save writes and",
        " * mlpc.load reads. A load changes nothing unless the whole file checks out. A save writes a",
        " * temporary file in the same folder and renames it into place. */",
        f"int {n}_load({n}_state *state, const char *path);",
        f"int {n}_save(const {n}_state *state, const char *path);",
        "",
        "/* Training steps taken since the weights' creation (saved as mlpc.steps). */",
        f"int64_t {n}_steps(const {n}_state *state);",
        "",
        "#ifdef __cplusplus",
        "}",
        "#endif",
        f"#endif /* {N}_H */",
        "",
    ]
    return "\n".join(lines)
