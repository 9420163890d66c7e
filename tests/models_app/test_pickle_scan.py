"""security_scan's static pickle analysis: real pickles pass, malicious ones are caught, nothing runs."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import zipfile

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from models_app.pickle_scan import scan_stream, summarize


def scan(data: bytes, path: str = "model.pkl"):
    return summarize(scan_stream(path, io.BytesIO(data)))


class Exploit:
    """Unpickling this would run os.system."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


class EvalExploit:
    def __reduce__(self):
        return (eval, ("1+1",))


class ImportExploit:
    def __reduce__(self):
        return (__import__, ("subprocess",))


def test_a_real_sklearn_pickle_passes():
    model = LogisticRegression().fit(np.array([[0.0], [1.0], [2.0], [3.0]]), [0, 0, 1, 1])
    for protocol in (2, 4, 5):
        passed, summary, metrics = scan(pickle.dumps(model, protocol=protocol))
        assert passed, summary
        assert metrics["pickle_files"] == 1


@pytest.mark.parametrize("payload", [Exploit(), EvalExploit(), ImportExploit(), [1, {"nested": Exploit()}]])
@pytest.mark.parametrize("protocol", [2, 4])
def test_malicious_pickles_fail_with_the_symbols_named(payload, protocol):
    passed, summary, _ = scan(pickle.dumps(payload, protocol=protocol))
    assert not passed
    assert any(sym in summary for sym in ("posix.system", "builtins.eval", "builtins.__import__"))


def test_stack_global_split_through_the_memo_is_still_seen():
    # Protocol 4 with module and name memoized, then fetched back with BINGET before STACK_GLOBAL.
    crafted = (
        b"\x80\x04"
        b"\x8c\x05posix\x94"  # SHORT_BINUNICODE 'posix', MEMOIZE -> memo 0
        b"\x8c\x06system\x94"  # 'system' -> memo 1
        b"0"  # POP
        b"0"  # POP
        b"h\x00h\x01"  # BINGET 0, BINGET 1
        b"\x93"  # STACK_GLOBAL
        b"\x8c\x02id\x85R."  # 'id', TUPLE1, REDUCE, STOP
    )
    passed, summary, _ = scan(crafted)
    assert not passed and "posix.system" in summary


def test_old_text_protocol_globals_are_seen():
    passed, summary, _ = scan(b"cos\nsystem\n(S'id'\ntR.")
    assert not passed and "os.system" in summary


def test_pickles_inside_zip_and_gzip_are_scanned():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(Exploit(), protocol=2))
    passed, summary, _ = scan(buffer.getvalue(), "model.pt")
    assert not passed and "model.pt!archive/data.pkl" in summary
    passed, summary, _ = scan(gzip.compress(pickle.dumps(Exploit(), protocol=4)), "model.joblib")
    assert not passed and "posix.system" in summary


def test_non_pickle_files_and_garbage():
    assert scan(b'{"json": true}', "config.json")[0]
    passed, summary, _ = scan(b"\x80\x04garbage", "model.pkl")
    assert not passed and "cannot be scanned" in summary


def test_scanning_never_executes(tmp_path):
    marker = tmp_path / "ran"

    class Touch:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    passed, _, _ = scan(pickle.dumps(Touch(), protocol=4))
    assert not passed and not marker.exists()
