"""The C ABI of exported libraries: its version, status codes, dtype/role codes, symbol names."""

from __future__ import annotations

import re

# Bump when anything a caller relies on changes: function signatures, struct layouts, codes,
# buffer semantics. Loaders refuse libraries of any other version.
ABI_VERSION = 2  # 2: runtime hyperparameters (buffers of role hyper, NAME_set_hyper/NAME_get_hyper)

# Symbols every exported library defines besides its NAME_* API, for loaders that look a library
# up through one dlopen handle (two libraries in one C program do not clash: C code never names them).
ABI_SYMBOL = "mlpc_abi_version"      # const uint32_t
NAME_SYMBOL = "mlpc_library_name"    # const char[]

STATUS = {
    "MLPC_OK": 0,
    "MLPC_E_ARGUMENT": 1,     # a NULL pointer, an unknown name, a batch size the library was not built for
    "MLPC_E_NOMEM": 2,
    "MLPC_E_IO": 3,           # a file could not be opened, read, written or renamed
    "MLPC_E_FORMAT": 4,       # not a safetensors file, truncated, corrupt, failed checksum
    "MLPC_E_MISMATCH": 5,     # a checkpoint's tensors do not match the model (names, dtypes, shapes)
    "MLPC_E_INPUT": 6,        # bad data: a label outside [0, classes)
    "MLPC_E_NUMERIC": 7,      # the loss became NaN or Inf
    "MLPC_E_UNSUPPORTED": 8,  # e.g. training with an inference-only library
    "MLPC_E_CPU": 9,          # this CPU lacks instructions the library was compiled for
    "MLPC_E_THREADS": 10,     # the step could not start its worker threads
}
STATUS_NAME = {v: k for k, v in STATUS.items()}

DTYPES = {"f32": 0, "i32": 1}
ROLES = {"param": 0, "state": 1, "hyper": 2}

_C_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SAFE_TENSOR_NAME = re.compile(r"^[A-Za-z0-9_.:\-/\[\]]+$")


# libNAME.so with these names would shadow a system library on the printed link line (-lm, -lc, ...)
SYSTEM_LIBRARIES = frozenset({
    "c", "m", "pthread", "dl", "rt", "util", "resolv", "crypt", "nsl", "anl", "mvec", "gcc", "gcc_s", "atomic",
    "stdc++", "c++", "gomp", "omp", "z", "ssl", "crypto", "ffi", "bsd", "cap", "numa", "unwind", "ld",
    "python3", "BrokenLocale", "nss_files", "nss_dns", "thread_db", "SegFault", "memusage", "pcprofile",
})


def check_library_name(name: str) -> str:
    """A library name must be a C identifier (it prefixes every exported symbol) naming no system library."""
    from mlpc.errors import MlpcError

    if not isinstance(name, str) or not _C_IDENT.match(name) or name.startswith("mlpc_"):
        raise MlpcError(f"library name {name!r} must be a C identifier not starting with 'mlpc_' "
                        f"(it prefixes every symbol: {name}_create, {name}_train_step, ...)")
    if name in SYSTEM_LIBRARIES:
        raise MlpcError(f"{name!r} would write lib{name}.so, which shadows the system library "
                        f"lib{name} on the link line (-l{name}); choose another name, e.g. {name}_model")
    return name


def library_name_for(stem: str) -> str:
    """A C identifier made from a file name stem ("mnist-mlp" -> "mnist_mlp")."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", stem) or "model"
    if name[0].isdigit():
        name = "m_" + name
    if name.startswith("mlpc_"):
        name = "model_" + name
    return name


def check_tensor_name(name: str) -> str:
    """Buffer names go into C string literals and JSON headers verbatim, so keep them plain."""
    from mlpc.errors import MlpcError

    if len(name) > 200:
        raise MlpcError(f"cannot export buffer {name[:40]!r}...: names are limited to 200 characters")
    if not _SAFE_TENSOR_NAME.match(name):
        raise MlpcError(f"cannot export buffer {name!r}: names may use only letters, digits and _.:-/[]")
    return name
