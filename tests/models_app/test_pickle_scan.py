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


def _s(text: str) -> bytes:
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data  # SHORT_BINUNICODE


def test_stack_tricks_cannot_disguise_a_global():
    # TUPLE2 pops two strings and POP drops the tuple, leaving 'os' on top. A scanner that does
    # not model each opcode's real stack effect would see 'numpy' + 'system' here and pass it.
    crafted = b"\x80\x04" + _s("os") + _s("a") + _s("numpy") + b"\x86" + b"0" + _s("system") + b"\x93"
    crafted += _s("echo pwned") + b"\x85R."
    passed, summary, _ = scan(crafted)
    assert not passed and "os.system" in summary and "numpy.system" not in summary


def test_pop_mark_and_dict_building_keep_the_stack_exact():
    crafted = b"\x80\x04" + _s("os") + b"(" + _s("numpy") + _s("x") + b"1"  # MARK … POP_MARK
    crafted += _s("system") + b"\x93" + _s("id") + b"\x85R."
    passed, summary, _ = scan(crafted)
    assert not passed and "os.system" in summary


class NumpyGadget:
    """numpy.testing's runstring execs its argument: a classic gadget inside an allowed package."""

    def __reduce__(self):
        from numpy.testing._private.utils import runstring

        return (runstring, ("import os", {}))


def test_gadgets_inside_allowed_packages_are_refused():
    passed, summary, _ = scan(pickle.dumps(NumpyGadget(), protocol=4))
    assert not passed and "numpy.testing._private.utils.runstring" in summary
    for symbol in (
        "numpy.load",
        "pandas.read_pickle",
        "numpy.memmap",
        "pandas.core.frame.DataFrame.eval",
        "collections.OrderedDict.__init__.__globals__",
        "sklearn.datasets.fetch_openml",
    ):
        crafted = b"\x80\x04" + _s(symbol.split(".")[0]) + _s(".".join(symbol.split(".")[1:])) + b"\x93)R."
        passed, summary, _ = scan(crafted)
        assert not passed and symbol in summary, symbol


def test_every_pickle_of_a_concatenated_file_is_scanned():
    # The legacy PyTorch format is several pickles back to back; the payload can be the last one.
    passed, summary, _ = scan(pickle.dumps(119547037146038801333356) + pickle.dumps(EvalExploit()), "m.pt")
    assert not passed and "builtins.eval" in summary


@pytest.mark.parametrize("compress", [0, 3, "gzip", "xz"])
def test_joblib_files_with_inline_arrays_pass(compress):
    import joblib
    from sklearn.ensemble import RandomForestClassifier

    x = np.random.default_rng(0).random((200, 4))
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(x, x[:, 0] > 0.5)
    extras = {
        "objects": np.array([1, "a", None], dtype=object),
        "when": np.array(["2020-01-01"], dtype="M8[ns]"),
    }
    for value in (forest, extras):
        buffer = io.BytesIO()
        joblib.dump(value, buffer, compress=compress)
        passed, summary, metrics = scan(buffer.getvalue(), "model.joblib")
        assert passed, summary
        assert metrics["pickle_files"] == 1


def test_a_malicious_object_array_inside_joblib_is_seen():
    import joblib

    buffer = io.BytesIO()
    joblib.dump({"weights": np.zeros(4), "payload": np.array([Exploit()], dtype=object)}, buffer)
    passed, summary, _ = scan(buffer.getvalue(), "model.joblib")
    assert not passed and "posix.system" in summary


def test_zip_members_that_are_pickles_are_scanned_whatever_their_name():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("weights/blob.bin", pickle.dumps(Exploit(), protocol=2))
        archive.writestr("README.txt", b"hello")
    passed, summary, _ = scan(buffer.getvalue(), "model.zip")
    assert not passed and "model.zip!weights/blob.bin" in summary


def test_forced_scan_reads_text_protocol_pickles_under_any_name():
    text_pickle = b"cos\nsystem\n(S'id'\ntR."
    assert scan_stream("model.bin", io.BytesIO(text_pickle)) == []  # not named or shaped like one
    (result,) = scan_stream("model.bin", io.BytesIO(text_pickle), force=True)
    assert result.unsafe == ["os.system"]
