"""Tests for kandle.datasets (cifar10, cifar100, mnist) and kandle.utils.data_utils.get_file: loaders on
synthetic archives in the official format, the real CIFAR-100 archive when present, downloads against
a local HTTP server, and refusal of malicious pickles. Every cache folder is redirected to tmp_path.
"""

import dataclasses
import glob
import hashlib
import http.server
import io
import os
import pickle
import socket
import struct
import subprocess
import tarfile
import threading
import warnings

import numpy as np
import pytest

from kandle.datasets import _common, cifar10, cifar100, mnist
from kandle.utils import data_utils

REAL_CIFAR100 = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared",
                             "datasets", "cifar-100-python.tar.gz")


@pytest.fixture(autouse=True)
def homes(tmp_path, monkeypatch):
    """Point kandle's and Keras's caches (and HOME) into tmp_path, and keep proxies off 127.0.0.1."""
    dirs = {name: tmp_path / name for name in ("kandle", "keras", "home")}
    monkeypatch.setenv("KANDLE_HOME", str(dirs["kandle"]))
    monkeypatch.setenv("KERAS_HOME", str(dirs["keras"]))
    monkeypatch.setenv("HOME", str(dirs["home"]))
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
    dirs["kandle_cache"] = dirs["kandle"] / "datasets"
    dirs["keras_cache"] = dirs["keras"] / "datasets"
    return dirs


# --- synthetic archives in the official layouts ---------------------------------------------------

KNOWN_RGB = (11, 22, 33)  # planted at image 0, row 1, column 2


def _images(n, seed):
    data = np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)
    if n:
        for channel, value in enumerate(KNOWN_RGB):  # channel-major: R plane, G plane, B plane
            data[0, channel * 1024 + 1 * 32 + 2] = value
    return data


def _tar_gz(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, raw in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


class Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 ``str`` opcodes, as the original CIFAR pickles do. (Python 3's own
    protocol 2 wraps bytes in ``_codecs.encode`` calls, a global the loader rightly refuses.)"""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_bytes(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def _pickle(obj):
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def cifar100_members(n_train=6, n_test=4, seed=0):
    rng = np.random.default_rng(seed + 1)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        out[f"cifar-100-python/{split}"] = _pickle({
            b"filenames": [b"img_%d.png" % i for i in range(n)],
            b"batch_label": b"synthetic " + split.encode(),
            b"fine_labels": [int(v) for v in rng.integers(0, 100, n)],
            b"coarse_labels": [int(v) for v in rng.integers(0, 20, n)],
            b"data": _images(n, seed + len(split)),
        })
    out["cifar-100-python/meta"] = _pickle({b"fine_label_names": [b"f%d" % i for i in range(100)],
                                            b"coarse_label_names": [b"c%d" % i for i in range(20)]})
    return out


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def unpickled(members, name):
    return pickle.loads(members[name], encoding="bytes")


# --- CIFAR-100 on synthetic archives ---------------------------------------------------------------

def test_cifar100_fine_and_coarse_from_kandle_cache(homes):
    members = cifar100_members()
    write(homes["kandle_cache"] / "cifar-100-python.tar.gz", _tar_gz(members))
    train, test = unpickled(members, "cifar-100-python/train"), unpickled(members, "cifar-100-python/test")
    for mode, limit in (("fine", 100), ("coarse", 20)):
        with pytest.warns(UserWarning, match="not the official cifar-100-python.tar.gz"):
            (x_train, y_train), (x_test, y_test) = cifar100.load_data(label_mode=mode)
        assert x_train.shape == (6, 32, 32, 3) and x_test.shape == (4, 32, 32, 3)
        assert x_train.dtype == np.uint8 and x_test.dtype == np.uint8
        assert y_train.shape == (6, 1) and y_test.shape == (4, 1)
        assert y_train.dtype == np.int64  # what Keras 3 returns (reshaped Python list)
        assert y_train[:, 0].tolist() == train[mode.encode() + b"_labels"]
        assert y_test[:, 0].tolist() == test[mode.encode() + b"_labels"]
        assert 0 <= y_train.min() and y_train.max() < limit


def test_cifar100_channel_major_to_channels_last(homes):
    members = cifar100_members()
    write(homes["kandle_cache"] / "cifar-100-python.tar.gz", _tar_gz(members))
    with pytest.warns(UserWarning):
        (x_train, _), _ = cifar100.load_data()
    assert tuple(x_train[0, 1, 2]) == KNOWN_RGB
    flat = unpickled(members, "cifar-100-python/train")[b"data"]
    np.testing.assert_array_equal(x_train, flat.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    assert x_train.flags["C_CONTIGUOUS"]


def test_cifar100_official_hash_loads_without_warning(homes, monkeypatch):
    data = _tar_gz(cifar100_members())
    path = write(homes["kandle_cache"] / "cifar-100-python.tar.gz", data)
    monkeypatch.setattr(cifar100, "SOURCE", dataclasses.replace(
        cifar100.SOURCE, sha256=hashlib.sha256(data).hexdigest()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (x_train, _), _ = cifar100.load_data()
    assert len(x_train) == 6 and os.path.exists(path)


def test_cifar100_cache_order_and_keras_cache(homes):
    keras_copy = write(homes["keras_cache"] / "cifar-100-python_archive",
                       _tar_gz(cifar100_members(n_train=3)))
    with pytest.warns(UserWarning, match="cifar-100-python_archive"):
        (x_train, _), _ = cifar100.load_data()
    assert len(x_train) == 3  # found in Keras's cache, which is only read
    assert os.listdir(homes["keras_cache"]) == ["cifar-100-python_archive"]
    assert not os.path.exists(homes["kandle_cache"])
    write(homes["kandle_cache"] / "cifar-100-python.tar.gz", _tar_gz(cifar100_members(n_train=5)))
    with pytest.warns(UserWarning):
        (x_train, _), _ = cifar100.load_data()
    assert len(x_train) == 5 and os.path.exists(keras_copy)  # kandle's own cache comes first


def test_cifar100_explicit_path(tmp_path):
    path = write(tmp_path / "elsewhere" / "c100.tgz", _tar_gz(cifar100_members(n_train=2)))
    with pytest.warns(UserWarning, match="c100.tgz"):
        (x_train, y_train), _ = cifar100.load_data("coarse", path=path)
    assert x_train.shape == (2, 32, 32, 3) and y_train.shape == (2, 1)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        cifar100.load_data(path=tmp_path / "nowhere.tar.gz")


def test_cifar100_invalid_label_mode():
    with pytest.raises(ValueError, match="label_mode"):
        cifar100.load_data(label_mode="medium")


def _corruptions():
    good = cifar100_members()
    bad_shape = unpickled(good, "cifar-100-python/train")
    bad_shape[b"data"] = bad_shape[b"data"][:, :3000]
    bad_label = unpickled(good, "cifar-100-python/test")
    bad_label[b"fine_labels"][0] = 100
    short_labels = unpickled(good, "cifar-100-python/test")
    short_labels[b"coarse_labels"] = short_labels[b"coarse_labels"][:-1]
    gz = _tar_gz(good)
    return {
        "truncated gzip": (gz[: len(gz) // 2], "truncated"),
        "not an archive": (b"<html>not found</html>" * 10, "not a readable tar"),
        "missing test": (_tar_gz({k: v for k, v in good.items() if not k.endswith("test")}), "no member"),
        "missing meta": (_tar_gz({k: v for k, v in good.items() if not k.endswith("meta")}), "no member"),
        "wrong shape": (_tar_gz({**good, "cifar-100-python/train": _pickle(bad_shape)}), r"\(N, 3072\)"),
        "label range": (_tar_gz({**good, "cifar-100-python/test": _pickle(bad_label)}), "fine_labels"),
        "label count": (_tar_gz({**good, "cifar-100-python/test": _pickle(short_labels)}), "coarse_labels"),
        "garbage pickle": (_tar_gz({**good, "cifar-100-python/meta": b"\x80\x02}q\x00(U"}), "not a valid"),
    }


@pytest.mark.parametrize("case", sorted(_corruptions()))
def test_cifar100_corrupt_archive_is_a_clear_error(homes, case):
    data, message = _corruptions()[case]
    path = write(homes["kandle_cache"] / "cifar-100-python.tar.gz", data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "loaded anyway" warning before the error
        with pytest.raises(ValueError, match=message) as info:
            cifar100.load_data()
    assert path in str(info.value)


# --- malicious pickles ------------------------------------------------------------------------------

class _Exploit:
    """Unpickling this would create ``marker`` (a harmless stand-in for running a command)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_malicious_pickle_in_archive_is_refused(homes, tmp_path):
    marker = str(tmp_path / "pwned")
    members = cifar100_members()
    members["cifar-100-python/train"] = _pickle({b"data": _Exploit(marker), b"fine_labels": [0]})
    write(homes["kandle_cache"] / "cifar-100-python.tar.gz", _tar_gz(members))
    with pytest.raises(pickle.UnpicklingError, match="Refusing to load `posix.mkdir`") as info:
        cifar100.load_data()
    assert isinstance(info.value, ValueError) and "cifar-100-python/train" in str(info.value)
    assert not os.path.exists(marker)


@pytest.mark.parametrize("payload", [(os.system, ("echo hacked",)), (eval, ("1+1",)),
                                     (subprocess.Popen, (["true"],))])
def test_restricted_unpickler_refuses_any_other_global(payload):
    class Gadget:
        def __reduce__(self):
            return payload
    with pytest.raises(_common.UnsafePickleError):
        _common.load_pickle(pickle.dumps([1, Gadget()]), "test")


def test_restricted_unpickler_reads_numpy_arrays_of_both_protocols():
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    obj = {b"data": arr, b"l": [1, 2]}
    for raw in (_pickle(obj), pickle.dumps(obj, protocol=4)):  # Python 2 style, and numpy's own
        out = _common.load_pickle(raw, "test")
        np.testing.assert_array_equal(out[b"data"], arr)


# --- CIFAR-10 and MNIST ------------------------------------------------------------------------------

def cifar10_archive(n=3):
    members = {}
    for i, name in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
        members[f"cifar-10-batches-py/{name}"] = _pickle({
            b"batch_label": name.encode(), b"labels": [(i + k) % 10 for k in range(n)],
            b"data": _images(n, i), b"filenames": [b"x.png"] * n})
    members["cifar-10-batches-py/batches.meta"] = _pickle({
        b"num_cases_per_batch": n, b"label_names": [b"n%d" % i for i in range(10)], b"num_vis": 3072})
    return _tar_gz(members)


def test_cifar10_synthetic(homes):
    write(homes["keras_cache"] / "cifar-10-batches-py.tar.gz", cifar10_archive(n=3))
    with pytest.warns(UserWarning, match="not the official cifar-10-python.tar.gz"):
        (x_train, y_train), (x_test, y_test) = cifar10.load_data()
    assert x_train.shape == (15, 32, 32, 3) and x_test.shape == (3, 32, 32, 3)
    assert y_train.shape == (15, 1) and y_test.shape == (3, 1)
    assert x_train.dtype == y_train.dtype == y_test.dtype == np.uint8
    assert y_train[:, 0].tolist() == [(i + k) % 10 for i in range(5) for k in range(3)]
    assert tuple(x_train[3, 1, 2]) == KNOWN_RGB  # first image of batch 2, in order


def mnist_npz(n_train=7, n_test=3, **overrides):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
              "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "y_test": rng.integers(0, 10, n_test, dtype=np.uint8)}
    arrays.update(overrides)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue(), arrays


def test_mnist_synthetic_and_explicit_path(homes, tmp_path):
    data, arrays = mnist_npz()
    write(homes["keras_cache"] / "mnist.npz", data)
    with pytest.warns(UserWarning, match="not the official mnist.npz"):
        (x_train, y_train), (x_test, y_test) = mnist.load_data()
    assert x_train.shape == (7, 28, 28) and y_train.shape == (7,) and x_test.shape == (3, 28, 28)
    assert x_train.dtype == y_train.dtype == np.uint8
    np.testing.assert_array_equal(y_test, arrays["y_test"])
    other = write(tmp_path / "d" / "m.npz", mnist_npz(n_train=2)[0])
    with pytest.warns(UserWarning):
        (x_train, _), _ = mnist.load_data(path=other)
    assert len(x_train) == 2


@pytest.mark.parametrize("overrides, message", [
    ({"x_train": np.zeros((7, 28, 27), np.uint8)}, "x_train"),
    ({"y_test": np.full(3, 10, np.uint8)}, "y_test"),
    ({"y_train": np.array([object()] * 7)}, "not a readable MNIST"),  # object array: pickle refused
])
def test_mnist_bad_file(homes, overrides, message):
    path = write(homes["kandle_cache"] / "mnist.npz", mnist_npz(**overrides)[0])
    with pytest.raises(ValueError, match=message) as info:
        mnist.load_data()
    assert path in str(info.value)


# --- downloads against a local HTTP server ------------------------------------------------------------

@pytest.fixture
def server():
    """A local HTTP server: ``routes[path] = (body, declared_length)``; a declared length larger than
    the body makes it send what it has and hang up, like an interrupted transfer."""
    routes, hits = {}, []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            if self.path not in routes:
                self.send_error(404)
                return
            body, length = routes[self.path]
            self.send_response(200)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield url, routes, hits
    httpd.shutdown()
    httpd.server_close()


def _serve_cifar100(monkeypatch, server, sha256=None, declared_extra=0):
    url, routes, hits = server
    data = _tar_gz(cifar100_members())
    routes["/c100.tar.gz"] = (data, len(data) + declared_extra)
    monkeypatch.setattr(cifar100, "SOURCE", dataclasses.replace(
        cifar100.SOURCE, origin=url + "/c100.tar.gz", sha256=sha256 or hashlib.sha256(data).hexdigest()))
    return data


def test_download_success_is_atomic_and_cached(homes, server, monkeypatch, capsys):
    data = _serve_cifar100(monkeypatch, server)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the served file is "official" here
        (x_train, y_train), _ = cifar100.load_data()
    assert x_train.shape == (6, 32, 32, 3) and y_train.shape == (6, 1)
    out = capsys.readouterr().out
    assert "Downloading data from " + server[0] in out and "100%" in out
    assert os.listdir(homes["kandle_cache"]) == ["cifar-100-python.tar.gz"]  # no temp left
    assert (homes["kandle_cache"] / "cifar-100-python.tar.gz").read_bytes() == data
    cifar100.load_data()
    assert server[2] == ["/c100.tar.gz"]  # second load served from the cache


def test_download_checksum_mismatch_leaves_nothing(homes, server, monkeypatch):
    _serve_cifar100(monkeypatch, server, sha256="0" * 64)
    with pytest.raises(ValueError, match="hash"):
        cifar100.load_data()
    assert os.listdir(homes["kandle_cache"]) == []


def test_interrupted_download_leaves_nothing(homes, server, monkeypatch):
    _serve_cifar100(monkeypatch, server, declared_extra=100_000)
    with pytest.raises(data_utils.DownloadError, match="cifar-100-python.tar.gz"):
        cifar100.load_data()
    assert os.listdir(homes["kandle_cache"]) == []


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_nothing_cached_and_server_down_says_where_to_put_the_file(homes, monkeypatch):
    monkeypatch.setattr(cifar100, "SOURCE", dataclasses.replace(
        cifar100.SOURCE, origin=f"http://127.0.0.1:{_closed_port()}/cifar-100-python.tar.gz"))
    with pytest.raises(OSError) as info:
        cifar100.load_data()
    message = str(info.value)
    assert isinstance(info.value, data_utils.DownloadError)
    assert str(homes["kandle_cache"] / "cifar-100-python.tar.gz") in message
    assert str(homes["keras_cache"] / "cifar-100-python.tar.gz") in message
    assert "load_data(path=...)" in message and "Connection refused" in message
    assert not glob.glob(str(homes["kandle_cache"] / "*"))


def test_get_file_download_hash_and_extract(homes, server, tmp_path, capsys):
    url, routes, hits = server
    payload = b"hello kandle" * 1000
    routes["/f.bin"] = (payload, len(payload))
    md5 = hashlib.md5(payload).hexdigest()
    path = data_utils.get_file("f.bin", url + "/f.bin", file_hash=md5)
    assert path == str(homes["kandle_cache"] / "f.bin") and read(path) == payload
    assert data_utils.validate_file(path, hashlib.sha256(payload).hexdigest())
    write(path, b"stale")  # a cached file with the wrong hash is fetched again
    assert read(data_utils.get_file("f.bin", url + "/f.bin", md5_hash=md5)) == payload
    assert len(hits) == 2
    with pytest.raises(ValueError, match="hash"):
        data_utils.get_file("g.bin", url + "/f.bin", file_hash="1" * 64, cache_dir=tmp_path / "c")
    assert os.listdir(tmp_path / "c" / "datasets") == []

    routes["/a.tar.gz"] = (archive := _tar_gz({"top/x.txt": b"x", "../evil.txt": b"e"}), len(archive))
    with pytest.warns(UserWarning, match="unsafe archive member"):
        folder = data_utils.get_file("a.tar.gz", url + "/a.tar.gz", extract=True, cache_dir=tmp_path / "e")
    assert folder == str(tmp_path / "e" / "datasets" / "a_extracted")
    assert read(os.path.join(folder, "top", "x.txt")) == b"x"
    assert not (tmp_path / "e" / "evil.txt").exists() and not (tmp_path / "e" / "datasets" / "evil.txt").exists()
    with pytest.raises(data_utils.DownloadError, match="404"):
        data_utils.get_file("missing.bin", url + "/missing.bin")


# --- the real CIFAR-100 archive (CI has it; a developer machine may not) -----------------------------

@pytest.mark.skipif(not os.path.isfile(REAL_CIFAR100), reason=f"real archive not found at {REAL_CIFAR100}")
def test_real_cifar100_from_prefilled_cache(homes, monkeypatch):
    os.makedirs(homes["kandle_cache"])
    os.symlink(os.path.realpath(REAL_CIFAR100), homes["kandle_cache"] / "cifar-100-python.tar.gz")
    monkeypatch.setattr(cifar100, "SOURCE", dataclasses.replace(
        cifar100.SOURCE, origin=f"http://127.0.0.1:{_closed_port()}/never-used"))
    with pytest.warns(UserWarning, match="validated structurally"):
        (x_train, y_train), (x_test, y_test) = cifar100.load_data()
    assert x_train.shape == (50000, 32, 32, 3) and x_test.shape == (10000, 32, 32, 3)
    assert x_train.dtype == x_test.dtype == np.uint8
    assert y_train.shape == (50000, 1) and y_test.shape == (10000, 1)
    assert y_train[:3, 0].tolist() == [19, 29, 0] and y_train[-3:, 0].tolist() == [3, 7, 73]
    assert y_train.min() == 0 and y_train.max() == 99 and np.bincount(y_train[:, 0]).tolist() == [500] * 100
    assert np.bincount(y_test[:, 0]).tolist() == [100] * 100
