"""A few lines that read and write safetensors files by hand (8-byte header length, JSON header,
raw data), so the saving tests can take kandle's files apart and forge broken ones without the
safetensors package."""

import json
import struct

import numpy as np

_DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64}


def read(path):
    """``(metadata dict, {name: array})`` of a safetensors file."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    body = data[8 + n:]
    tensors = {}
    for name, info in header.items():
        start, stop = info["data_offsets"]
        tensors[name] = np.frombuffer(body[start:stop], dtype=_DTYPES[info["dtype"]]).reshape(info["shape"])
    return meta, tensors


def write(path, meta, tensors):
    """Writes ``tensors`` (name -> array) with the string ``meta`` as ``__metadata__``."""
    header, chunks, offset = {"__metadata__": meta}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        dtype = {v: k for k, v in _DTYPES.items()}[a.dtype.type]
        raw = a.tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))
