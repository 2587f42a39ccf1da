"""Loading exported libraries: ABI version checks, and damaged or foreign files end in clear errors."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

import mlpc
from codegen.aot.abi import ABI_VERSION
from mlpc import nn
from mlpc.errors import MlpcError
from runtime.aot_stamp import _field, stamp
from tests.aot_util import compile_c, export, run, trainer


def field_offset(blob: bytes) -> int:
    at = _field(blob, "library")
    assert at is not None
    return at


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A small library (so random damage lands in code and tables, not only in weights)."""
    out = tmp_path_factory.mktemp("small")
    tr = trainer(nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)), batch=4)
    return tr, export(tr, out, "small", threads=1)


@pytest.mark.parametrize("probe", [True, False])
def test_another_abi_version_is_refused(small, tmp_path, probe):
    tr, _ = small
    ex = export(tr, tmp_path, "future", abi_version=ABI_VERSION + 1)
    with pytest.raises(MlpcError) as e:
        mlpc.load_library(ex.library, probe=probe)
    msg = str(e.value)
    assert f"built for mlpc library ABI version {ABI_VERSION + 1}" in msg
    assert f"loads ABI version {ABI_VERSION} only" in msg and "re-export" in msg


def test_renamed_library_loads_by_its_symbols(small, tmp_path):
    _, ex = small
    other = tmp_path / "whatever.so"
    other.write_bytes(ex.library.read_bytes())
    lib = mlpc.load_library(other)
    assert lib.name == "small" and lib.abi_version == ABI_VERSION and lib.ir_hash == ex.spec.ir_hash


def test_a_library_not_exported_by_mlpc(tmp_path):
    src = tmp_path / "plain.c"
    src.write_text("int plain_answer(void) { return 42; }\n")
    lib = compile_c([src], tmp_path / "libplain.so", [], [], ["-shared", "-fPIC"])
    with pytest.raises(MlpcError, match="not a library exported by mlpc"):
        mlpc.load_library(lib)


def test_missing_empty_and_garbage_files(tmp_path):
    with pytest.raises(MlpcError, match="cannot read library"):
        mlpc.load_library(tmp_path / "absent.so")
    cases = {"empty.so": b"", "text.so": b"hello world\n" * 20,
             "random.so": np.random.default_rng(0).bytes(5000),
             "elf32.so": b"\x7fELF\x01\x01\x01" + bytes(100)}
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(MlpcError, match="not a loadable shared library"):
            mlpc.load_library(tmp_path / name)


def test_foreign_machine_is_refused(small, tmp_path):
    _, ex = small
    blob = bytearray(ex.library.read_bytes())
    struct.pack_into("<H", blob, 18, 183 if struct.unpack_from("<H", blob, 18)[0] != 183 else 62)
    (tmp_path / "foreign.so").write_bytes(bytes(blob))
    with pytest.raises(MlpcError, match="built for"):
        mlpc.load_library(tmp_path / "foreign.so")


def test_truncated_libraries(small, tmp_path):
    _, ex = small
    blob = ex.library.read_bytes()
    for cut in (10, 63, 64, 200, 4096, len(blob) // 3, len(blob) // 2, len(blob) - 4096, len(blob) - 1):
        path = tmp_path / f"cut{cut}.so"
        path.write_bytes(blob[:cut])
        with pytest.raises(MlpcError):
            mlpc.load_library(path)


def test_randomly_damaged_libraries_are_refused_before_they_run(small, tmp_path):
    """Flip bytes all over a valid library: the ELF checks or the SHA-256 stamp refuse every copy
    before any of its code runs, with a message that says the file is damaged."""
    _, ex = small
    blob = ex.library.read_bytes()
    rng = np.random.default_rng(7)
    for i in range(40):
        damaged = bytearray(blob)
        for pos in rng.integers(0, len(blob), 1 + i % 4):
            damaged[pos] ^= int(rng.integers(1, 256))
        path = tmp_path / f"damaged{i}.so"
        path.write_bytes(bytes(damaged))
        with pytest.raises(MlpcError, match="damaged|not a loadable shared library"):
            mlpc.load_library(path)


def _file_offset(blob: bytes, vaddr: int) -> int:
    phoff, = struct.unpack_from("<Q", blob, 32)
    phnum, = struct.unpack_from("<H", blob, 56)
    for i in range(phnum):
        p_type, _f, off, va, _pa, filesz, _m, _a = struct.unpack_from("<IIQQQQQQ", blob, phoff + 56 * i)
        if p_type == 1 and va <= vaddr < va + filesz:
            return off + vaddr - va
    raise AssertionError(f"address {vaddr:#x} is in no loadable segment")


def test_a_crash_inside_the_library_is_caught_by_the_probe(small, tmp_path):
    """A library whose code traps (here: create starts with ud2) but whose stamp is valid, as a broken
    toolchain or a CPU without the compiled-for instructions would give: the throwaway process dies,
    this one raises."""
    _, ex = small
    blob = bytearray(ex.library.read_bytes())
    addr = int([line.split()[0] for line in run(["nm", "-D", str(ex.library)]).stdout.splitlines()
                if line.endswith(" small_create")][0], 16)
    at = _file_offset(bytes(blob), addr)
    blob[at:at + 2] = b"\x0f\x0b"  # ud2
    path = tmp_path / "libtrap.so"
    path.write_bytes(bytes(blob))
    with pytest.raises(MlpcError, match="stamp"):
        mlpc.load_library(path)
    f = field_offset(bytes(blob))
    blob[f:f + 64] = b"0" * 64
    path.write_bytes(bytes(blob))
    stamp(path)
    with pytest.raises(MlpcError, match="crashed a test process .signal SIGILL"):
        mlpc.load_library(path)


def test_an_unstamped_library_is_refused(small, tmp_path):
    _, ex = small
    blob = bytearray(ex.library.read_bytes())
    f = field_offset(bytes(blob))
    blob[f - 4:f] = b"XXXX"  # the marker is gone
    (tmp_path / "nostamp.so").write_bytes(bytes(blob))
    with pytest.raises(MlpcError, match="no integrity stamp"):
        mlpc.load_library(tmp_path / "nostamp.so")


def test_damaged_embedded_weights_are_caught_by_their_checksum(small, tmp_path):
    _, ex = small
    blob = bytearray(ex.library.read_bytes())
    weights = ex.weights.read_bytes()
    at = bytes(blob).find(weights[:64])
    assert at > 0
    blob[at + len(weights) - 3] ^= 0x40  # inside the last tensor's data
    path = tmp_path / "bad_weights.so"
    path.write_bytes(bytes(blob))
    with pytest.raises(MlpcError, match="stamp"):
        mlpc.load_library(path)
    f = field_offset(bytes(blob))
    blob[f:f + 64] = b"0" * 64
    path.write_bytes(bytes(blob))
    stamp(path)  # the library's own check of its embedded checkpoint is next in line
    with pytest.raises(MlpcError, match="create.*the weights built into small failed its checksum"):
        mlpc.load_library(path)


def test_a_cpu_without_the_compiled_instructions(small, tmp_path):
    """Code compiled for XOP (AMD Bulldozer-family only) is refused by create() with MLPC_E_CPU on any
    CPU without it, reported as a clear error instead of an illegal instruction."""
    tr, _ = small
    ex = export(tr, tmp_path, "xop", cpu="x86-64", features="+xop", threads=1)
    flags = Path("/proc/cpuinfo").read_text().split()
    if "xop" in flags:
        assert mlpc.load_library(ex.library).target["features"] == "+xop"
    else:
        with pytest.raises(MlpcError, match="compiled for cpu x86-64, which has xop; this CPU lacks it"):
            mlpc.load_library(ex.library)
