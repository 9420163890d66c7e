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
import re
import zipfile
import zlib
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

# Inside the allowed packages: modules and names that touch files, the network or run code.
DENIED_PREFIXES = (
    "numpy.testing",
    "numpy.f2py",
    "numpy.distutils",
    "numpy.ctypeslib",
    "numpy.compat",
    "numpy.lib.npyio",
    "numpy.lib._npyio_impl",
    "numpy.lib.format",
    "numpy.lib._datasource",
    "numpy.lib.utils",
    "numpy.lib._utils_impl",
    "numpy.DataSource",
    "numpy.lib.DataSource",
    "numpy.core.memmap",
    "numpy._core.memmap",
    "pandas.io",
    "pandas.core.computation",
    "pandas.HDFStore",
    "pandas.ExcelWriter",
    "pandas.ExcelFile",
    "pandas.testing",
    "pandas._testing",
    "pandas.util",
    "pandas.api",
    "pandas.plotting",
    "pandas._config",
    "sklearn.datasets",
    "sklearn.externals",
    "sklearn.utils._testing",
    "sklearn.utils._show_versions",
    "sklearn._build_utils",
    "sklearn.__check_build",
    "scipy.sparse._matrix_io",
    "joblib.numpy_pickle.NDArrayWrapper",  # old format: reads another file by name
    "joblib.numpy_pickle.ZNDArrayWrapper",
    "xgboost.testing",
    "xgboost.tracker",
    "xgboost.dask",
    "xgboost.spark",
    "xgboost.collective",
    "lightgbm.dask",
)
# Function names (the last step of a symbol) that load, save, run or reach out.
_DANGEROUS_NAME = re.compile(
    r"^_*(load|read|save|dump|exec|eval|run|system|popen|spawn|open|fromfile|tofile|fromregex|to_|"
    r"compile|import|getattr|setattr|delattr|memmap|query|fetch|download|urlopen)"
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


# Bounds against archives and pickles built to exhaust the scanner (memory, time).
MAX_STACK = 1_000_000
BOMB_RATIO = 200  # zip members expanding more than this...
BOMB_MIN_BYTES = 64 * 1024**2  # ...to more than this are refused unread


def is_safe(symbol: str) -> bool:
    """True when unpickling may import ``symbol``: allowlisted, and not a known gadget in it.

    Whole packages are allowed for their classes, but a few of their modules and functions read
    or write files, fetch data or run code (``numpy.testing._private.utils.runstring`` execs a
    string): those are refused by ``DENIED_PREFIXES``, by name (``_DANGEROUS_NAME``), and any
    dunder step (``Foo.__init__.__globals__``) in a protocol-4 dotted name is refused too.
    """
    if symbol in SAFE_NAMES:
        return True
    parts = symbol.split(".")
    if any(p.startswith("__") and p.endswith("__") and len(p) > 4 for p in parts):
        return False
    if any(symbol == d or symbol.startswith(d + ".") for d in DENIED_PREFIXES):
        return False
    if _DANGEROUS_NAME.match(parts[-1]):
        return False
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


class _Mark:
    """The MARK opcode's place on the stack."""


_MARK = _Mark()


@dataclass(eq=False)
class _Global:
    """A global the unpickler would import (``module.name``)."""

    symbol: str


@dataclass(eq=False)
class _Obj:
    """The result of calling a global (REDUCE, NEWOBJ, OBJ, INST), with its BUILD state if any."""

    cls: str
    args: object = None
    state: object = None


_INT_OPS = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"}
_CONST_OPS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}
_CONTAINER_OPS = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS"}
_JOBLIB_WRAPPER = "joblib.numpy_pickle.NumpyArrayWrapper"


class _Simulator:
    """The unpickler's stack and memo, replayed from opcodes: values, never objects.

    Every opcode's effect comes from ``pickletools``' own stack metadata (``stack_before`` /
    ``stack_after``), so the model cannot drift from the real machine: a trick that pops or
    rebuilds the stack to make ``os``/``system`` look like harmless strings sees the same stack
    here. Literal strings, numbers, tuples, lists and dicts are tracked as values (enough to
    resolve ``STACK_GLOBAL`` operands and joblib's array headers); everything else is unknown.
    """

    def __init__(self, found: set[str]) -> None:
        self.found = found
        self.stack: list[object] = []
        self.memo: dict[int, object] = {}

    def _pop(self, n: int) -> list[object]:
        if n == 0:
            return []
        if len(self.stack) < n or any(v is _MARK for v in self.stack[-n:]):
            raise ValueError("stack underflow (malformed pickle)")
        items = self.stack[-n:]
        del self.stack[-n:]
        return items

    def _pop_to_mark(self) -> list[object]:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i] is _MARK:
                items = self.stack[i + 1 :]
                del self.stack[i:]
                return items
        raise ValueError("no MARK on the stack (malformed pickle)")

    def _add_global(self, symbol: str) -> _Global:
        self.found.add(symbol)
        return _Global(symbol)

    def step(self, opcode: pickletools.OpcodeInfo, arg: object) -> object:
        """Apply one opcode; returns the object a BUILD just completed (else None)."""
        name = opcode.name
        before = opcode.stack_before
        if name in ("PROTO", "FRAME", "STOP"):
            return None
        if name in _STRING_OPS:
            self.stack.append(arg.decode("latin-1") if isinstance(arg, bytes) else arg)
        elif name in _INT_OPS or name in ("BINFLOAT", "FLOAT"):
            self.stack.append(arg)
        elif name in _CONST_OPS:
            self.stack.append(_CONST_OPS[name])
        elif name == "MARK":
            self.stack.append(_MARK)
        elif name in ("POP", "POP_MARK"):
            if name == "POP_MARK" or (self.stack and self.stack[-1] is _MARK):
                self._pop_to_mark() if name == "POP_MARK" else self.stack.pop()
            else:
                self._pop(1)
        elif name == "DUP":
            self.stack.append(self._pop(1)[0])
            self.stack.append(self.stack[-1])
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            if not self.stack:
                raise ValueError("memoizing an empty stack (malformed pickle)")
            self.memo[int(arg)] = self.stack[-1]
        elif name == "MEMOIZE":
            if not self.stack:
                raise ValueError("memoizing an empty stack (malformed pickle)")
            self.memo[len(self.memo)] = self.stack[-1]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            if int(arg) not in self.memo:
                raise ValueError(f"memo key {arg} was never stored (malformed pickle)")
            self.stack.append(self.memo[int(arg)])
        elif name == "GLOBAL":
            module, _, attr = str(arg).partition(" ")
            self.stack.append(self._add_global(_symbol(module, attr)))
        elif name == "STACK_GLOBAL":
            module, attr = self._pop(2)
            valid = isinstance(module, str) and isinstance(attr, str)
            self.stack.append(self._add_global(f"{module}.{attr}" if valid else "<dynamic>"))
        elif name == "INST":
            module, _, attr = str(arg).partition(" ")
            cls = self._add_global(_symbol(module, attr))
            self.stack.append(_Obj(cls.symbol, tuple(self._pop_to_mark())))
        elif name == "OBJ":
            items = self._pop_to_mark()
            if not items:
                raise ValueError("OBJ without a class (malformed pickle)")
            self.stack.append(_Obj(_callee(items[0]), tuple(items[1:])))
        elif name in ("REDUCE", "NEWOBJ"):
            callee, args = self._pop(2)
            self.stack.append(_Obj(_callee(callee), args))
        elif name == "NEWOBJ_EX":
            callee, args, _kwargs = self._pop(3)
            self.stack.append(_Obj(_callee(callee), args))
        elif name.startswith("EXT"):
            # The copyreg extension registry maps codes to globals we cannot see: refuse.
            self.stack.append(self._add_global(f"<extension {arg}>"))
        elif name in ("EMPTY_TUPLE", "TUPLE1", "TUPLE2", "TUPLE3"):
            self.stack.append(tuple(self._pop(len(before))))
        elif name == "TUPLE":
            self.stack.append(tuple(self._pop_to_mark()))
        elif name == "EMPTY_LIST":
            self.stack.append([])
        elif name == "LIST":
            self.stack.append(list(self._pop_to_mark()))
        elif name == "EMPTY_DICT":
            self.stack.append({})
        elif name == "DICT":
            items = self._pop_to_mark()
            self.stack.append(_as_dict(items))
        elif name in _CONTAINER_OPS:
            items = self._pop_to_mark() if name.endswith("S") else self._pop(len(before) - 1)
            container = self._pop(1)[0]
            if isinstance(container, dict) and name.startswith("SETITEM"):
                container.update(_as_dict(items))
            elif isinstance(container, list) and name.startswith("APPEND"):
                container.extend(items)
            self.stack.append(container)
        elif name == "BUILD":
            target, state = self._pop(2)
            if isinstance(target, _Obj):
                target.state = state
            self.stack.append(target)
            return target
        else:
            # Anything else: apply its documented stack effect with unknown results.
            if pickletools.markobject in before:
                self._pop_to_mark()
                self._pop(before.index(pickletools.markobject))
            else:
                self._pop(len(before))
            self.stack.extend(None for _ in opcode.stack_after)
        return None


def _callee(value: object) -> str:
    if isinstance(value, _Global):
        return value.symbol
    if isinstance(value, _Obj):
        return value.cls
    return "<dynamic>"


def _as_dict(items: list[object]) -> dict:
    pairs = zip(items[0::2], items[1::2], strict=False)
    return {k: v for k, v in pairs if isinstance(k, str | int | float | bool | type(None))}


def _joblib_array_bytes(wrapper: _Obj) -> tuple[int, bool, bool]:
    """``(size, has_objects, aligned)`` of the array joblib writes right after its wrapper."""
    state = wrapper.state if isinstance(wrapper.state, dict) else {}
    shape, dtype = state.get("shape"), state.get("dtype")
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ValueError("joblib array header without a usable shape")
    if not isinstance(dtype, _Obj) or not isinstance(dtype.args, tuple) or not dtype.args:
        raise ValueError("joblib array header without a usable dtype")
    code = dtype.args[0]
    dstate = dtype.state if isinstance(dtype.state, tuple) else ()
    if not isinstance(code, str):
        raise ValueError("joblib array header with an unusual dtype")
    if _dtype_has_objects(dtype):
        return 0, True, False
    elsize = dstate[5] if len(dstate) > 5 and isinstance(dstate[5], int) else -1
    if elsize > 0:
        itemsize = elsize
    else:
        import numpy  # parses a type code such as "f8"; nothing from the file is executed

        try:
            itemsize = numpy.dtype(code).itemsize
        except TypeError as exc:
            raise ValueError(f"joblib array header with an unknown dtype {code!r}") from exc
    count = 1
    for dim in shape:
        count *= dim
    aligned = state.get("numpy_array_alignment_bytes") is not None
    return count * itemsize, False, aligned


def _dtype_has_objects(dtype: object, depth: int = 0) -> bool:
    """Whether a pickled ``numpy.dtype`` holds Python objects (directly or in a field)."""
    if depth > 32:
        raise ValueError("joblib array header with a dtype nested too deep")
    if not isinstance(dtype, _Obj) or not isinstance(dtype.args, tuple) or not dtype.args:
        raise ValueError("joblib array header without a usable dtype")
    if isinstance(dtype.args[0], str) and dtype.args[0].startswith("O"):
        return True
    dstate = dtype.state if isinstance(dtype.state, tuple) else ()
    subarray = dstate[2] if len(dstate) > 2 else None
    if isinstance(subarray, tuple) and subarray and _dtype_has_objects(subarray[0], depth + 1):
        return True
    fields = dstate[4] if len(dstate) > 4 else None
    if isinstance(fields, dict):
        return any(
            isinstance(spec, tuple) and spec and _dtype_has_objects(spec[0], depth + 1)
            for spec in fields.values()
        )
    return False


def _skip(stream: BinaryIO, size: int) -> None:
    while size > 0:
        chunk = stream.read(min(size, 1024 * 1024))
        if not chunk:
            raise ValueError("file ends inside a joblib array")
        size -= len(chunk)


def _scan_one(stream: BinaryIO, found: set[str]) -> None:
    """Walk one pickle (up to its STOP), following joblib's inline arrays."""
    sim = _Simulator(found)
    for opcode, arg, _pos in pickletools.genops(stream):
        built = sim.step(opcode, arg)
        if len(sim.stack) > MAX_STACK or len(sim.memo) > MAX_STACK:
            # Real models keep a shallow stack; millions of entries is a bomb aimed at the scanner.
            raise ValueError(f"more than {MAX_STACK:,} values on the stack or memo (refused)")
        if opcode.name == "STOP":
            return
        if isinstance(built, _Obj) and built.cls == _JOBLIB_WRAPPER:
            # joblib writes the array's raw bytes (or a nested pickle of an object array) right
            # after the wrapper's BUILD; the unpickler reads them there. Skip or scan them too.
            size, has_objects, aligned = _joblib_array_bytes(built)
            if has_objects:
                _scan_one(stream, found)
                continue
            if aligned:
                padding = stream.read(1)
                if not padding:
                    raise ValueError("file ends inside a joblib array")
                _skip(stream, padding[0])
            _skip(stream, size)
    raise ValueError("pickle ends without STOP")


def pickle_globals(stream: BinaryIO) -> set[str]:
    """Every global a pickle stream references, without executing it.

    The stack is replayed exactly (see ``_Simulator``), so ``STACK_GLOBAL`` operands split
    through the memo or hidden behind stack tricks are still seen; operands that are not plain
    strings are reported as ``<dynamic>``. Pickles written back to back in one file (the legacy
    PyTorch format) are all scanned.
    """
    found: set[str] = set()
    while True:
        _scan_one(stream, found)
        head = stream.read(2)
        if not looks_like_pickle(head):
            return found
        stream = _Prefixed(head, stream)


class _ZlibRaw(io.RawIOBase):
    """A zlib stream (joblib's default compression) decompressed as it is read."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw, self._z, self._pos = raw, zlib.decompressobj(), 0

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer) -> int:
        out = b""
        while not out and not self._z.eof:
            data = self._z.unconsumed_tail or self._raw.read(64 * 1024)
            if not data:
                break
            # max_length bounds memory however well the data compresses (no zip-bomb blow-up).
            out = self._z.decompress(data, len(buffer))
        buffer[: len(out)] = out
        self._pos += len(out)
        return len(out)


def _is_zlib(head: bytes) -> bool:
    return len(head) >= 2 and head[0] == 0x78 and ((head[0] << 8) | head[1]) % 31 == 0


def _decompressed(head: bytes, stream: BinaryIO) -> BinaryIO | None:
    if head.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=stream)
    if head.startswith(b"BZh"):
        return bz2.BZ2File(stream)
    if head.startswith(b"\xfd7zXZ"):
        return lzma.LZMAFile(stream)
    if _is_zlib(head):
        return io.BufferedReader(_ZlibRaw(stream))
    return None


def _named_like_pickle(path: str) -> bool:
    return path.lower().endswith(PICKLE_SUFFIXES[:3])


def scan_stream(path: str, stream: BinaryIO, *, force: bool = False) -> list[ScanResult]:
    """Scan one file (seekable stream); a zip yields one result per pickle inside it.

    A file is scanned when it starts like a pickle (protocol 2+) or is named like one; with
    ``force`` (the loader, just before it unpickles a file) it is scanned whatever it looks like,
    so a protocol-0 pickle under an innocent name cannot slip past.
    """
    head = stream.read(8)
    stream.seek(0)
    if head.startswith(b"PK\x03\x04"):
        results = []
        try:
            with zipfile.ZipFile(stream) as archive:
                for member in archive.infolist():
                    if member.is_dir():
                        continue
                    ratio = member.file_size / max(member.compress_size, 1)
                    if member.file_size > BOMB_MIN_BYTES and ratio > BOMB_RATIO:
                        results.append(
                            ScanResult(
                                path=f"{path}!{member.filename}",
                                is_pickle=True,
                                error=f"expands {ratio:,.0f}x to {member.file_size:,} bytes: "
                                "refused as a zip bomb",
                            )
                        )
                        continue
                    with archive.open(member) as inner:
                        inner_head = inner.read(2)
                    if looks_like_pickle(inner_head) or _named_like_pickle(member.filename):
                        # Streamed from the archive, never read whole into memory.
                        with archive.open(member) as inner:
                            results += _scan_pickle(f"{path}!{member.filename}", inner)
        except zipfile.BadZipFile as exc:
            return [ScanResult(path=path, error=f"unreadable zip: {exc}")]
        return results
    inner = _decompressed(head, stream)
    if inner is not None:
        try:
            inner_head = inner.read(8)
        except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
            if force or _named_like_pickle(path):
                return [ScanResult(path=path, is_pickle=True, error=f"unreadable compressed file: {exc}")]
            return []
        if not (force or looks_like_pickle(inner_head) or _named_like_pickle(path)):
            return []
        return _scan_pickle(path, _Prefixed(inner_head, inner))
    if not (force or looks_like_pickle(head) or _named_like_pickle(path)):
        return []
    return _scan_pickle(path, stream)


def _scan_pickle(path: str, stream: BinaryIO) -> list[ScanResult]:
    result = ScanResult(path=path, is_pickle=True)
    try:
        result.globals = pickle_globals(stream)
    except (ValueError, EOFError, IndexError, UnicodeDecodeError, OSError, zlib.error, lzma.LZMAError) as exc:
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
