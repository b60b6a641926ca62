"""Owns file download and caching: ``get_file`` (Keras's API), hashing, archive extraction, and the
atomic, checksum-verified download that the dataset loaders in ``kandle.datasets`` build on.

Pure stdlib (urllib, hashlib, tarfile, zipfile) so fetching data never needs the compiled core.
"""

import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile

__all__ = ["DownloadError", "get_file", "hash_file", "validate_file", "extract_archive", "download",
           "kandle_home", "keras_home"]

_CHUNK = 1 << 20
# Seconds without a byte before a download is abandoned: long enough for slow links, short enough
# that an offline machine or a dead server reports an error instead of hanging.
DOWNLOAD_TIMEOUT = 60.0


class DownloadError(OSError):
    """A file could not be fetched (server unreachable, HTTP error, transfer cut short).

    An ``OSError`` because the cause is I/O, and so that code written for Keras (which raises a plain
    ``Exception`` here) still catches it.
    """


def kandle_home():
    """kandle's cache root: ``$KANDLE_HOME`` if set, else ``~/.kandle``."""
    return os.path.expanduser(os.environ.get("KANDLE_HOME") or os.path.join("~", ".kandle"))


def keras_home():
    """Keras's cache root (``$KERAS_HOME`` or ``~/.keras``): read, never written, so that a machine
    that already downloaded a dataset with Keras reuses it."""
    return os.path.expanduser(os.environ.get("KERAS_HOME") or os.path.join("~", ".keras"))


def _writable_dir(base, subdir):
    """``base/subdir``, falling back to the temp dir (as Keras does) when ``base`` is read-only."""
    base = os.path.expanduser(base)
    if os.path.isabs(subdir):
        path = subdir
    else:
        probe = base
        while not os.path.exists(probe) and os.path.dirname(probe) != probe:
            probe = os.path.dirname(probe)
        if not os.access(probe, os.W_OK):
            base = os.path.join(tempfile.gettempdir(), ".kandle")
        path = os.path.join(base, subdir)
    os.makedirs(path, exist_ok=True)
    return path


def resolve_hasher(algorithm, file_hash=None):
    """A fresh hashlib object; ``"auto"`` means sha256 for a 64-hex-digit hash, else md5."""
    if algorithm == "sha256" or (algorithm == "auto" and file_hash is not None and len(file_hash) == 64):
        return hashlib.sha256()
    if algorithm in ("md5", "auto"):
        return hashlib.md5()
    raise ValueError(f"hash_algorithm must be 'auto', 'sha256' or 'md5'. Received: {algorithm!r}")


def hash_file(fpath, algorithm="sha256", chunk_size=65535):
    """Hex digest of a file, read in chunks so large archives don't need to fit in memory."""
    hasher = resolve_hasher(algorithm) if algorithm != "auto" else hashlib.sha256()
    with open(fpath, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def validate_file(fpath, file_hash, algorithm="auto", chunk_size=65535):
    """True if the file's digest equals ``file_hash`` (case-insensitive)."""
    hasher = resolve_hasher(algorithm, file_hash)
    return hash_file(fpath, hasher.name, chunk_size) == str(file_hash).lower()


class _Progress:
    """Download progress on ``sys.stdout``: a redrawn bar on a terminal, one line per 10% in a log."""

    def __init__(self, total):
        self.total = total if total and total > 0 else None
        self.start = time.monotonic()
        self.last_draw = 0.0
        self.last_step = 0
        self.shown = -1
        self.tty = bool(getattr(sys.stdout, "isatty", lambda: False)())

    def _line(self, done):
        mb = done / 1e6
        rate = mb / max(time.monotonic() - self.start, 1e-6)
        if self.total is None:
            return f"{mb:9.1f} MB  {rate:6.1f} MB/s"
        frac = min(done / self.total, 1.0)
        bar = "=" * int(frac * 30)
        bar = (bar[:-1] + ">" if 0 < len(bar) < 30 else bar).ljust(30, ".")
        return f"{mb:9.1f}/{self.total / 1e6:.1f} MB [{bar}] {frac:4.0%}  {rate:6.1f} MB/s"

    def _show(self, done, end=""):
        self.shown = done
        sys.stdout.write(("\r" if self.tty else "") + self._line(done) + ("\n" if end or not self.tty else ""))
        sys.stdout.flush()

    def update(self, done):
        if self.tty:
            now = time.monotonic()
            if now - self.last_draw >= 0.1:
                self.last_draw = now
                self._show(done)
            return
        step = int(10 * done / self.total) if self.total else done // (50 * _CHUNK)
        if step > self.last_step:
            self.last_step = step
            self._show(done)

    def finish(self, done):
        if self.tty or self.shown != done:
            self._show(done, end="\n")


def download(origin, target, file_hash=None, hash_algorithm="auto", timeout=None):
    """Fetch ``origin`` to ``target`` atomically, with a progress bar, verifying ``file_hash``.

    The bytes go to a temp file in ``target``'s folder and are renamed onto ``target`` only once the
    transfer is complete (Content-Length honoured) and the hash matches, so an interrupted or corrupt
    download never sits in the cache looking like the real file. Raises ``DownloadError`` on network
    failure and ``ValueError`` on a hash mismatch; in both cases nothing is left behind.
    """
    folder = os.path.dirname(os.path.abspath(target))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(target) + ".", suffix=".part")
    hasher = resolve_hasher(hash_algorithm, file_hash) if file_hash is not None else None
    done = 0
    try:
        sys.stdout.write(f"Downloading data from {origin}\n")
        sys.stdout.flush()
        with os.fdopen(fd, "wb") as out:
            try:
                # A fresh opener reads the proxy environment now, not when urllib was first used.
                opener = urllib.request.build_opener()
                with opener.open(origin, timeout=timeout or DOWNLOAD_TIMEOUT) as resp:
                    length = resp.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                    progress = _Progress(total)
                    while True:
                        chunk = resp.read(_CHUNK)
                        if not chunk:
                            break
                        out.write(chunk)
                        if hasher is not None:
                            hasher.update(chunk)
                        done += len(chunk)
                        progress.update(done)
            except urllib.error.HTTPError as e:
                raise DownloadError(f"URL fetch failure on {origin}: HTTP {e.code} {e.reason}") from e
            except urllib.error.URLError as e:
                raise DownloadError(f"URL fetch failure on {origin}: {e.reason}") from e
            except (OSError, ValueError, http.client.HTTPException) as e:  # reset, timeout, short read
                raise DownloadError(f"URL fetch failure on {origin} after {done} bytes: "
                                    f"{type(e).__name__}: {e}") from e
            if total is not None and done != total:
                raise DownloadError(f"URL fetch failure on {origin}: the connection closed after {done} "
                                    f"of {total} bytes (incomplete download discarded).")
            progress.finish(done)
            out.flush()
            os.fsync(out.fileno())
        if hasher is not None and hasher.hexdigest() != str(file_hash).lower():
            raise ValueError(f"Incomplete or corrupted file detected: the {hasher.name} hash of the data "
                             f"downloaded from {origin} is {hasher.hexdigest()}, not the expected "
                             f"{file_hash}. The download was discarded; nothing was saved.")
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return target


def _is_within(base, name):
    path = os.path.realpath(os.path.join(base, name))
    return os.path.commonpath([path, base]) == base


def _safe_tar_members(archive, base):
    for info in archive:
        ok = _is_within(base, info.name)
        if ok and (info.issym() or info.islnk()):
            link_base = base if info.islnk() else os.path.dirname(os.path.join(base, info.name))
            ok = _is_within(base, os.path.join(link_base, info.linkname))
        if ok and (info.isdev() or info.isfifo()):
            ok = False
        if ok:
            yield info
        else:
            warnings.warn(f"Skipping unsafe archive member during extraction: {info.name!r}", stacklevel=3)


def extract_archive(file_path, path=".", archive_format="auto"):
    """Extract a tar (any compression) or zip archive into ``path``, refusing members that would land
    outside it. Returns True if the file was a recognised archive, False otherwise."""
    if archive_format is None:
        return False
    formats = ["tar", "zip"] if archive_format == "auto" else archive_format
    formats = [formats] if isinstance(formats, str) else formats
    file_path, path = os.fspath(file_path), os.fspath(path)
    os.makedirs(path, exist_ok=True)
    base = os.path.realpath(path)
    for fmt in formats:
        if fmt == "tar" and tarfile.is_tarfile(file_path):
            with tarfile.open(file_path) as archive:
                kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                archive.extractall(base, members=_safe_tar_members(archive, base), **kwargs)
            return True
        if fmt == "zip" and zipfile.is_zipfile(file_path):
            with zipfile.ZipFile(file_path) as archive:
                names = [n for n in archive.namelist() if _is_within(base, n)]
                archive.extractall(base, members=names)
            return True
        if fmt not in ("tar", "zip"):
            raise NotImplementedError(f"Unknown archive format: {fmt!r}")
    return False


def get_file(fname=None, origin=None, untar=False, md5_hash=None, file_hash=None, cache_subdir="datasets",
             hash_algorithm="auto", extract=False, archive_format="auto", cache_dir=None,
             force_download=False):
    """Download ``origin`` into the cache unless it is already there, and return the local path.

    Same contract as ``keras.utils.get_file``, with kandle's cache (``$KANDLE_HOME`` or ``~/.kandle``)
    as the default ``cache_dir``. A cached file whose hash does not match is downloaded again. With
    ``extract=True`` (or the deprecated ``untar``) the archive is unpacked next to it and the
    extraction folder is returned: ``fname`` with an extension is the archive's name and the folder is
    ``<stem>_extracted``; ``fname`` without one is the folder and the archive is ``<fname>_archive``.
    """
    if origin is None:
        raise ValueError('Please specify the "origin" argument (URL of the file to download).')
    if md5_hash is not None and file_hash is None:
        file_hash, hash_algorithm = md5_hash, "md5"
    datadir = _writable_dir(cache_dir if cache_dir is not None else kandle_home(), cache_subdir)

    fname = os.fspath(fname) if fname else os.path.basename(urllib.parse.urlsplit(origin).path)
    if not fname:
        raise ValueError(f"Can't parse the file name from the origin {origin!r}; pass `fname`.")
    if os.sep in fname or (os.altsep and os.altsep in fname):
        raise ValueError(f"`fname` must be a file name, not a path; use `cache_dir` for the folder. "
                         f"Received: fname={fname}")

    extraction_dir = None
    if extract or untar:
        if "." in fname:
            download_target = os.path.join(datadir, fname)
            extraction_dir = os.path.join(datadir, fname[: fname.find(".")] + "_extracted")
        else:
            download_target = os.path.join(datadir, fname + "_archive")
            extraction_dir = os.path.join(datadir, fname)
    else:
        download_target = os.path.join(datadir, fname)

    fetch = force_download or not os.path.exists(download_target)
    if not fetch and file_hash is not None and not validate_file(download_target, file_hash, hash_algorithm):
        sys.stdout.write(f"A local file was found at {download_target}, but its hash does not match "
                         f"{file_hash}; downloading it again.\n")
        fetch = True
    if fetch:
        download(origin, download_target, file_hash=file_hash, hash_algorithm=hash_algorithm)

    if extraction_dir is None:
        return download_target
    if fetch or not os.path.isdir(extraction_dir):
        # Extract beside the final folder and swap it in, so a crash mid-way leaves no partial tree.
        tmp_dir = tempfile.mkdtemp(dir=datadir, prefix="." + os.path.basename(extraction_dir) + ".")
        try:
            if not extract_archive(download_target, tmp_dir, "tar" if untar else archive_format):
                warnings.warn(f"Could not extract archive {download_target}.", stacklevel=2)
            if os.path.isdir(extraction_dir):
                shutil.rmtree(extraction_dir)
            os.replace(tmp_dir, extraction_dir)
        finally:
            if os.path.isdir(tmp_dir):
                shutil.rmtree(tmp_dir, ignore_errors=True)
    return extraction_dir
