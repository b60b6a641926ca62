"""Files that kandle must refuse: every one raises ``ValueError`` naming the file and what is wrong,
and loading never runs code from a file.

Cases: truncation at many offsets, changed bytes anywhere (found by the checksum when the file still
parses), foreign files (wrong magic: random bytes, a pickle, a zip without config.json, an HDF5
file, a safetensors file of someone else's), a newer format version, the architecture JSON edited to
an unknown layer or to sizes its tensors do not have, tensors reshaped, removed or of another dtype.
"""

import json
import pickle
import zipfile

import numpy as np
import pytest

import _safetensors_io as st
from kandle.layers import Conv2D, Dense, Flatten, Input, MaxPooling2D
from kandle.models import Sequential, load_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A trained, compiled model saved once: ``(path, bytes, model, x)``."""
    rng = np.random.default_rng(0)
    x = rng.random((10, 8, 8, 1), dtype=np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 10)]
    model = Sequential([Input((8, 8, 1)), Conv2D(3, 3, activation="relu"), MaxPooling2D(), Flatten(),
                        Dense(4, activation="softmax", name="out")])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["acc"])
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path_factory.mktemp("saved") / "good.kandle"
    model.save(path)
    return path, path.read_bytes(), model, x


def refused(path, *fragments):
    """Asserts that loading `path` raises ValueError mentioning the file and each fragment."""
    with pytest.raises(ValueError) as info:
        load_model(path)
    message = str(info.value)
    assert str(path) in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def header_end(data):
    return 8 + int.from_bytes(data[:8], "little")


@pytest.mark.parametrize("fraction", [0.0, 0.001, 0.01, 0.05, 0.3, 0.5, 0.8, 0.99, 0.9999])
def test_truncated_files_are_refused(tmp_path, saved, fraction):
    _, data, _, _ = saved
    cut = int(len(data) * fraction)
    path = tmp_path / "cut.kandle"
    path.write_bytes(data[:cut])
    refused(path, "empty" if cut == 0 else "truncated")


def test_truncated_at_the_header_boundaries(tmp_path, saved):
    _, data, _, _ = saved
    end = header_end(data)
    for cut in (7, 8, 9, end - 1, end, end + 1, len(data) - 1):
        path = tmp_path / f"cut{cut}.kandle"
        path.write_bytes(data[:cut])
        refused(path)


def test_changed_bytes_are_detected(tmp_path, saved):
    """200 random positions, random XOR masks: refused, unless the byte was header padding turned
    into other JSON whitespace (harmless: the model loads identical)."""
    _, data, model, x = saved
    rng = np.random.default_rng(1)
    expected = model.predict(x, verbose=0)
    end = header_end(data)
    positions = np.concatenate([rng.integers(0, end, 100), rng.integers(end, len(data), 100)])
    path = tmp_path / "flipped.kandle"
    for pos in positions:
        mask = int(rng.integers(1, 256))
        b = bytearray(data)
        b[pos] ^= mask
        path.write_bytes(bytes(b))
        try:
            loaded = load_model(path)
        except ValueError as e:
            assert str(path) in str(e)
            continue
        assert data[pos] == 0x20 and chr(b[pos]) in "\t\n\r", f"byte {pos} ^ {mask:#x} went unnoticed"
        np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)


def test_a_flipped_weight_bit_is_a_checksum_error(tmp_path, saved):
    _, data, _, _ = saved
    b = bytearray(data)
    b[-5] ^= 0x01  # the lowest bit of a float in the last tensor
    path = tmp_path / "bit.kandle"
    path.write_bytes(bytes(b))
    refused(path, "checksum mismatch")


@pytest.mark.parametrize("content,expected", [
    (b"", "empty"),
    (b"hello, this is a text file and not a model at all\n", "not a kandle model file"),
    (bytes(range(256)) * 4, "not a kandle model file"),
    (b"\x89HDF\r\n\x1a\n" + bytes(100), "Keras 2 HDF5"),
])
def test_foreign_files_are_refused(tmp_path, content, expected):
    path = tmp_path / "foreign.kandle"
    path.write_bytes(content)
    refused(path, expected)


def test_other_safetensors_files_are_refused(tmp_path):
    path = tmp_path / "model.safetensors"
    st.write(path, {}, {"weight": np.zeros((2, 2), np.float32)})
    refused(path, "without kandle's header")
    st.write(path, {"format": "pt"}, {"weight": np.zeros((2, 2), np.float32)})
    refused(path, "format 'pt'")


def test_a_zip_that_is_not_a_keras_model_is_refused(tmp_path):
    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hello")
    refused(path, "config.json")


def test_loading_never_unpickles(tmp_path):
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.kandle"
    path.write_bytes(pickle.dumps(Payload()))
    refused(path, "not a kandle model file")
    assert not marker.exists()


def test_a_newer_format_version_is_refused(tmp_path, saved):
    meta, tensors = st.read(saved[0])
    meta["format_version"] = "3"
    path = tmp_path / "newer.kandle"
    st.write(path, meta, tensors)
    refused(path, "format version 3", "upgrade kandle")
    meta["format_version"] = "one"
    st.write(path, meta, tensors)
    refused(path, "invalid format_version")


def test_an_unknown_layer_in_the_json_is_named(tmp_path, saved):
    meta, tensors = st.read(saved[0])
    config = json.loads(meta["model_config"])
    config["config"]["layers"][1]["class_name"] = "GaussianNoise"
    meta["model_config"] = json.dumps(config)
    path = tmp_path / "unknown.kandle"
    st.write(path, meta, tensors)
    refused(path, "Unknown layer: 'GaussianNoise'")


def test_json_that_does_not_parse_is_refused(tmp_path, saved):
    meta, tensors = st.read(saved[0])
    meta["model_config"] = meta["model_config"][:-3]
    path = tmp_path / "badjson.kandle"
    st.write(path, meta, tensors)
    refused(path, "model_config", "not valid JSON")


def test_config_sizes_that_do_not_match_the_tensors(tmp_path, saved):
    meta, tensors = st.read(saved[0])
    config = json.loads(meta["model_config"])
    config["config"]["layers"][3]["config"]["units"] = 5  # the file's kernel is (27, 4)
    meta["model_config"] = json.dumps(config)
    path = tmp_path / "units.kandle"
    st.write(path, meta, tensors)
    refused(path, 'layer "out" (Dense)', "[27, 4] in the file, expected [27, 5]")


def test_tensors_that_do_not_match_the_config(tmp_path, saved):
    meta, tensors = st.read(saved[0])
    conv, pool = (spec["config"]["name"] for spec in json.loads(meta["model_config"])["config"]["layers"][:2])
    path = tmp_path / "shapes.kandle"
    st.write(path, meta, {**tensors, f"layers/{conv}/kernel": np.zeros((3, 3, 1, 4), np.float32)})
    refused(path, 'layer "conv2d', "(Conv2D)", "[3, 3, 1, 4] in the file, expected [3, 3, 1, 3]")
    st.write(path, meta, {k: v for k, v in tensors.items() if k != "layers/out/bias"})
    refused(path, "weight 1 of layer \"out\" (Dense) ('layers/out/bias') is missing")
    st.write(path, meta, {**tensors, f"layers/{pool}/kernel": np.zeros(3, np.float32)})
    refused(path, f"layers/{pool}/kernel")
    st.write(path, meta, {**tensors, "layers/out/bias": np.zeros(4, np.float64)})
    refused(path, "dtype F64")
    st.write(path, meta, {**tensors, f"optimizer/{conv}/bias/1": np.zeros(4, np.float32)})
    refused(path, f"optimizer slot 'optimizer/{conv}/bias/1'")


def test_an_edited_value_that_still_makes_sense_fails_the_checksum(tmp_path, saved):
    meta, tensors = st.read(saved[0])
    compile_config = json.loads(meta["compile_config"])
    compile_config["optimizer"]["config"]["learning_rate"] = 0.5
    meta["compile_config"] = json.dumps(compile_config)
    path = tmp_path / "lr.kandle"
    st.write(path, meta, tensors)
    refused(path, "checksum mismatch")
    meta, tensors = st.read(saved[0])
    del meta["checksum"]
    st.write(path, meta, tensors)
    refused(path, "checksum is missing")


def test_missing_files_and_directories(tmp_path):
    refused(tmp_path / "nope.kandle", "file not found")
    with pytest.raises(ValueError, match="directory"):
        load_model(tmp_path)


def test_load_weights_from_a_corrupt_file_changes_nothing(tmp_path, saved):
    _, data, model, x = saved
    b = bytearray(data)
    b[-9] ^= 0x10
    path = tmp_path / "w.kandle"
    path.write_bytes(bytes(b))
    before = model.get_weights()
    with pytest.raises(ValueError, match="checksum mismatch"):
        model.load_weights(path)
    for a, c in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, c)
