"""Static scan of pickle-based files: which globals would unpickling import and call?

No file is ever unpickled here: the opcode stream is read with ``pickletools.genops`` and every
``GLOBAL`` / ``STACK_GLOBAL`` / ``INST`` target is collected and checked against an allowlist
of modules and names that only rebuild data (NumPy arrays, scikit-learn estimators, …).
Pickles inside zip archives (PyTorch ``.pt``) and gzip/bz2/xz-compressed pickles (joblib) are
scanned too. This module imports nothing from Django, so the serving runtime can use it.
"""

from __future__ import annotations

import _compat_pickle
import bz2
import gzip
import io
import lzma
import pickletools
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

# Whole modules whose globals only rebuild data or estimators.
SAFE_MODULE_PREFIXES = (
    "numpy",
    "sklearn",
    "scipy.sparse",
    "scipy.stats._distn_infrastructure",
    "pandas",
    "xgboost",
    "lightgbm",
    "joblib.numpy_pickle",
    "torch._utils",
    "torch.storage",
    "torch.nn.modules",
    "collections",
    "datetime",
    "decimal",
    "uuid",
    "fractions",
)
# Exact names outside those modules.
SAFE_NAMES = frozenset(
    {
        "builtins.set",
        "builtins.frozenset",
        "builtins.dict",
        "builtins.list",
        "builtins.tuple",
        "builtins.slice",
        "builtins.range",
        "builtins.complex",
        "builtins.bytearray",
        "builtins.bytes",
        "builtins.str",
        "builtins.int",
        "builtins.float",
        "builtins.bool",
        "builtins.object",
        "copyreg._reconstructor",
        "copy_reg._reconstructor",
        "_codecs.encode",
        "torch.FloatStorage",
        "torch.DoubleStorage",
        "torch.HalfStorage",
        "torch.LongStorage",
        "torch.IntStorage",
        "torch.BFloat16Storage",
        "torch.ByteStorage",
        "torch.BoolStorage",
        "torch.device",
        "torch.Size",
        "torch.float32",
        "torch.float16",
        "torch.bfloat16",
    }
)

PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".ckpt", ".bin", ".sav", ".dat")
_STRING_OPS = {
    "SHORT_BINUNICODE",
    "BINUNICODE",
    "BINUNICODE8",
    "UNICODE",
    "SHORT_BINSTRING",
    "BINSTRING",
    "STRING",
}


@dataclass
class ScanResult:
    path: str
    is_pickle: bool = False
    globals: set[str] = field(default_factory=set)
    error: str = ""

    @property
    def unsafe(self) -> list[str]:
        return sorted(g for g in self.globals if not is_safe(g))


def is_safe(symbol: str) -> bool:
    if symbol in SAFE_NAMES:
        return True
    module = symbol.rsplit(".", 1)[0] if "." in symbol else symbol
    return any(module == prefix or module.startswith(prefix + ".") for prefix in SAFE_MODULE_PREFIXES)


def looks_like_pickle(head: bytes) -> bool:
    """Protocol 2+ pickles start with PROTO (0x80) and a protocol number."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _symbol(module: object, attr: object) -> str:
    """``module.attr`` as unpickling would resolve it (Python 2 names mapped as ``fix_imports`` does)."""
    if not isinstance(module, str) or not isinstance(attr, str):
        return "<dynamic>"
    module, attr = _compat_pickle.NAME_MAPPING.get((module, attr), (module, attr))
    module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    return f"{module}.{attr}"


def pickle_globals(stream: BinaryIO) -> set[str]:
    """Every global a pickle stream references, without executing it.

    ``STACK_GLOBAL`` takes module and name from the stack: we follow string pushes and the memo
    (``BINPUT``/``MEMOIZE`` then ``BINGET``) so that tricks splitting the name are still seen.
    A ``STACK_GLOBAL`` whose operands are not plain strings is reported as ``<dynamic>``.
    """
    found: set[str] = set()
    stack: list[str | None] = []
    memo: dict[int, str | None] = {}
    for opcode, arg, _pos in pickletools.genops(stream):
        name = opcode.name
        if name in ("GLOBAL", "INST"):
            module, _, attr = str(arg).partition(" ")
            found.add(_symbol(module, attr))
            stack.append(None)
        elif name == "STACK_GLOBAL":
            attr = stack.pop() if stack else None
            module = stack.pop() if stack else None
            found.add(
                f"{module}.{attr}" if isinstance(module, str) and isinstance(attr, str) else "<dynamic>"
            )
            stack.append(None)
        elif name in _STRING_OPS:
            stack.append(
                arg if isinstance(arg, str) else arg.decode("latin-1") if isinstance(arg, bytes) else None
            )
        elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[int(arg)] = stack[-1] if stack else None
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1] if stack else None
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            stack.append(memo.get(int(arg)))
        elif name == "STOP":
            break
        elif name in ("FRAME", "PROTO"):
            continue  # no effect on the stack
        elif name == "POP":
            if stack:
                stack.pop()
        else:
            # Anything else: we only need to know it is not one of our tracked strings.
            stack.append(None)
    return found


def _decompressed(head: bytes, stream: BinaryIO) -> BinaryIO | None:
    if head.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=stream)
    if head.startswith(b"BZh"):
        return bz2.BZ2File(stream)
    if head.startswith(b"\xfd7zXZ"):
        return lzma.LZMAFile(stream)
    return None


def scan_stream(path: str, stream: BinaryIO) -> list[ScanResult]:
    """Scan one file (seekable stream); a zip yields one result per pickle inside it."""
    head = stream.read(8)
    stream.seek(0)
    if head.startswith(b"PK\x03\x04"):
        results = []
        try:
            with zipfile.ZipFile(stream) as archive:
                for member in archive.infolist():
                    if member.filename.endswith((".pkl", ".pickle")) or member.filename.endswith("/data.pkl"):
                        with archive.open(member) as inner:
                            results += scan_stream(f"{path}!{member.filename}", io.BytesIO(inner.read()))
        except zipfile.BadZipFile as exc:
            return [ScanResult(path=path, error=f"unreadable zip: {exc}")]
        return results
    inner = _decompressed(head, stream)
    if inner is not None:
        try:
            inner_head = inner.read(8)
        except (OSError, EOFError, lzma.LZMAError) as exc:
            return [ScanResult(path=path, error=f"unreadable compressed file: {exc}")]
        if not looks_like_pickle(inner_head):
            return []
        return _scan_pickle(path, _Prefixed(inner_head, inner))
    if not looks_like_pickle(head) and not path.lower().endswith(PICKLE_SUFFIXES[:3]):
        return []
    return _scan_pickle(path, stream)


def _scan_pickle(path: str, stream: BinaryIO) -> list[ScanResult]:
    result = ScanResult(path=path, is_pickle=True)
    try:
        result.globals = pickle_globals(stream)
    except (ValueError, EOFError, IndexError, UnicodeDecodeError) as exc:
        result.error = f"not a well-formed pickle: {exc}"
    return [result]


class _Prefixed(io.RawIOBase):
    """A stream with some already-read bytes put back in front."""

    def __init__(self, prefix: bytes, rest: BinaryIO) -> None:
        self._prefix, self._rest = prefix, rest
        self._pos = 0

    def readable(self) -> bool:
        return True

    def tell(self) -> int:  # pickletools.genops reports positions
        return self._pos

    def read(self, n: int = -1) -> bytes:
        data = self._read(n)
        self._pos += len(data)
        return data

    def _read(self, n: int) -> bytes:
        if self._prefix:
            if n < 0:
                data, self._prefix = self._prefix + self._rest.read(), b""
                return data
            data, self._prefix = self._prefix[:n], self._prefix[n:]
            return data + (self._rest.read(n - len(data)) if n > len(data) else b"")
        return self._rest.read(n)

    def readline(self, size: int = -1) -> bytes:  # pickletools reads text opcodes by line
        out = bytearray()
        while size < 0 or len(out) < size:
            ch = self.read(1)
            if not ch:
                break
            out += ch
            if ch == b"\n":
                break
        return bytes(out)


def summarize(results: Iterable[ScanResult]) -> tuple[bool, str, dict]:
    """``(passed, summary, metrics)`` for a set of scan results."""
    results = list(results)
    pickles = [r for r in results if r.is_pickle or r.error]
    bad = {r.path: r.unsafe for r in pickles if r.unsafe}
    broken = {r.path: r.error for r in pickles if r.error}
    metrics = {"pickle_files": len(pickles), "unsafe": bad, "unreadable": broken}
    if bad:
        detail = "; ".join(f"{path}: {', '.join(symbols)}" for path, symbols in sorted(bad.items()))
        return False, f"Unsafe imports in pickle files: {detail}", metrics
    if broken:
        return (
            False,
            "Pickle files that cannot be scanned: " + "; ".join(f"{p}: {e}" for p, e in broken.items()),
            metrics,
        )
    if not pickles:
        return True, "No pickle-based files.", metrics
    return True, f"{len(pickles)} pickle-based file(s) import only allowed symbols.", metrics
