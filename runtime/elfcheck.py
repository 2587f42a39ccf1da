"""Structural checks of an ELF shared object before dlopen: header, class, machine, segment bounds."""

from __future__ import annotations

import struct
import sys
from functools import cache

from mlpc.errors import MlpcError

ET_DYN = 3
PT_LOAD, PT_DYNAMIC = 1, 2
MACHINES = {3: "x86", 62: "x86-64", 183: "aarch64", 243: "riscv", 40: "arm"}


@cache
def host_machine() -> int | None:
    """e_machine of the running Python executable (None when it cannot be read)."""
    try:
        with open(sys.executable, "rb") as f:
            head = f.read(20)
    except OSError:
        return None
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    return struct.unpack_from("<H" if head[5] == 1 else ">H", head, 18)[0]


def check_shared_object(data: bytes, what: str) -> None:
    """Raise MlpcError unless `data` looks like a complete 64-bit little-endian ELF shared object for
    this machine whose program headers and loadable segments lie inside the file."""
    def bad(why: str) -> MlpcError:
        return MlpcError(f"{what} is not a loadable shared library: {why}")

    if len(data) < 64:
        raise bad(f"only {len(data)} bytes")
    if data[:4] != b"\x7fELF":
        raise bad("no ELF header (is it a library built by `mlpc aot`?)")
    if data[4] != 2 or data[5] != 1:
        raise bad("not a 64-bit little-endian ELF file")
    e_type, e_machine = struct.unpack_from("<HH", data, 16)
    if e_type != ET_DYN:
        raise bad(f"ELF type {e_type} is not a shared object")
    host = host_machine()
    if host is not None and e_machine != host:
        raise bad(f"built for {MACHINES.get(e_machine, e_machine)}, this machine is {MACHINES.get(host, host)}")
    e_phoff, e_shoff = struct.unpack_from("<QQ", data, 32)
    e_phentsize, e_phnum, e_shentsize, e_shnum = struct.unpack_from("<HHHH", data, 54)
    if e_phnum == 0 or e_phentsize != 56 or e_phoff + e_phnum * e_phentsize > len(data):
        raise bad("program headers are missing or truncated")
    if e_shoff and (e_shentsize != 64 or e_shoff + e_shnum * e_shentsize > len(data)):
        raise bad("section headers are truncated (the file is cut short)")
    loads = dynamic = 0
    for i in range(e_phnum):
        p_type, _flags, p_offset, _vaddr, _paddr, p_filesz, p_memsz, p_align = struct.unpack_from(
            "<IIQQQQQQ", data, e_phoff + i * e_phentsize)
        if p_type in (PT_LOAD, PT_DYNAMIC):
            if p_offset + p_filesz > len(data):
                raise bad(f"segment {i} ends at byte {p_offset + p_filesz}, past the end of the file "
                          f"({len(data)} bytes): the file is truncated")
            if p_type == PT_LOAD and p_filesz > p_memsz:
                raise bad(f"segment {i} is inconsistent")
            if p_type == PT_LOAD and p_align > 1 and (p_align & (p_align - 1)):
                raise bad(f"segment {i} has alignment {p_align}")
            loads += p_type == PT_LOAD
            dynamic += p_type == PT_DYNAMIC
    if not loads or not dynamic:
        raise bad("no loadable or dynamic segment")
