"""A SHA-256 stamp inside each exported library, so a damaged file is refused before it is opened.

The glue defines the string MARKER followed by 64 '0's; after linking, the SHA-256 of the whole
file (with those 64 characters as '0's) is written over them. Stripping or patching the library
afterwards therefore also fails the check.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from mlpc.errors import MlpcError

MARKER = b"MLPC-LIBRARY-SHA256:"
ZEROS = b"0" * 64


def _field(data: bytes, what: str) -> int | None:
    """Offset of the 64 hash characters, None when the file has no stamp."""
    at = data.find(MARKER)
    if at < 0:
        return None
    if data.find(MARKER, at + 1) >= 0:
        raise MlpcError(f"{what} is damaged: it holds two integrity stamps")
    return at + len(MARKER)


def digest(data: bytes, at: int) -> str:
    return hashlib.sha256(data[:at] + ZEROS + data[at + 64:]).hexdigest()


def stamp(path: Path) -> str:
    """Write the file's SHA-256 into its stamp; returns the hash."""
    data = path.read_bytes()
    at = _field(data, str(path))
    if at is None or data[at:at + 64] != ZEROS:
        raise MlpcError(f"{path} has no empty integrity stamp to fill in")
    h = digest(data, at)
    path.write_bytes(data[:at] + h.encode() + data[at + 64:])
    return h


def verify(data: bytes, what: str) -> bool:
    """True when the stamp matches, False when there is none; MlpcError when it does not match."""
    at = _field(data, what)
    if at is None:
        return False
    if data[at:at + 64] != digest(data, at).encode():
        raise MlpcError(f"{what} is damaged: its contents do not match the SHA-256 stamped into it at export "
                        f"(was the file truncated, corrupted, stripped or patched?); export it again")
    return True
