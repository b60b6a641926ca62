"""The import targets of the 2018 Keras tutorial family exist in kandle, so the tutorials' import block
ports by renaming ``keras`` to ``kandle``; and the new ones (``kandle.preprocessing.image``,
``kandle.applications.imagenet_utils``, ``kandle.utils.vis_utils``) behave as Keras's do."""

import hashlib
import importlib
import io
import json
import os
import pathlib
import sys
import warnings

import numpy as np
import pytest

from kandle.layers import Conv2D, Dense, Flatten, MaxPooling2D
from kandle.models import Sequential

ROOT = pathlib.Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------- targets
@pytest.mark.parametrize("module, names", [
    ("kandle.utils.np_utils", ["to_categorical"]),
    ("kandle.utils.data_utils", ["get_file"]),
    ("kandle.utils.layer_utils", ["print_summary"]),
    ("kandle.utils", ["layer_utils", "np_utils", "plot_model", "get_file", "to_categorical"]),
    ("kandle.preprocessing", ["image"]),
    ("kandle.preprocessing.image", ["load_img", "img_to_array", "array_to_img", "save_img"]),
    ("kandle.applications", ["imagenet_utils"]),
    ("kandle.applications.imagenet_utils", ["preprocess_input", "decode_predictions"]),
    ("kandle.utils.vis_utils", ["model_to_dot", "plot_model"]),
    ("kandle.initializers", ["glorot_uniform"]),
    ("kandle.callbacks", ["ModelCheckpoint"]),
    ("kandle.backend", ["set_image_data_format", "set_learning_phase"]),
])
def test_import_target_exists(module, names):
    mod = importlib.import_module(module)
    for name in names:
        if not hasattr(mod, name):
            importlib.import_module(f"{module}.{name}")  # a submodule, as `from kandle.utils import np_utils`
        assert hasattr(mod, name), f"{module}.{name}"


def test_lazy_top_level_attributes():
    import kandle

    assert kandle.preprocessing.image.load_img is not None
    assert kandle.applications.imagenet_utils.decode_predictions is not None
    assert kandle.losses is not None


def _notebook_import_cell(name):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and "import kandle.backend as K" in c.source)
    return "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith("%"))


@pytest.mark.parametrize("name", ["01_simple_nn.ipynb", "02_simple_cnn.ipynb"])
def test_notebook_import_block_runs(name, monkeypatch):
    """The tutorials' import block, as the notebooks carry it, imports (the `%matplotlib` magic aside)."""
    for mod in ("matplotlib", "seaborn", "pandas", "sklearn", "scipy", "PIL", "IPython"):
        pytest.importorskip(mod)
    import matplotlib

    matplotlib.use("Agg")
    source = _notebook_import_cell(name)
    assert "keras" not in source.replace("kandle", "")
    namespace = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy.misc's deprecation, as in the notebooks
        exec(compile(source, name, "exec"), namespace)
    for name_ in ("image", "load_img", "img_to_array", "decode_predictions", "preprocess_input", "layer_utils",
                  "np_utils", "get_file", "model_to_dot", "plot_model", "glorot_uniform", "losses", "K",
                  "ModelCheckpoint", "Sequential", "Conv2D", "MaxPooling2D", "Dense", "Dropout", "Flatten",
                  "cifar100", "confusion_matrix", "classification_report"):
        assert name_ in namespace, name_


# ------------------------------------------------------------------------------ preprocessing.image
@pytest.fixture
def pil():
    return pytest.importorskip("PIL.Image")


@pytest.fixture
def rgb_file(tmp_path, pil):
    arr = np.zeros((6, 8, 3), np.uint8)
    arr[..., 0] = np.arange(8) * 30  # red ramp along the width
    arr[:3, :, 1] = 200  # green on the top half
    path = tmp_path / "pic.png"
    pil.fromarray(arr, "RGB").save(path)
    return path, arr


def test_load_img_and_img_to_array_round_trip(rgb_file):
    from kandle.preprocessing.image import img_to_array, load_img

    path, arr = rgb_file
    for p in (str(path), path, str(path).encode()):
        img = load_img(p)
        assert img.size == (8, 6) and img.mode == "RGB"
        x = img_to_array(img)
        assert x.dtype == np.float32 and x.shape == (6, 8, 3)
        np.testing.assert_array_equal(x, arr)
    with open(path, "rb") as f:
        x = img_to_array(load_img(io.BytesIO(f.read())), data_format="channels_first", dtype="uint8")
    assert x.dtype == np.uint8 and x.shape == (3, 6, 8)
    np.testing.assert_array_equal(x, arr.transpose(2, 0, 1))


def test_load_img_modes_and_resizing(rgb_file):
    from kandle.preprocessing.image import img_to_array, load_img

    path, _ = rgb_file
    gray = load_img(path, color_mode="grayscale")
    assert gray.mode == "L" and img_to_array(gray).shape == (6, 8, 1)
    assert img_to_array(gray, data_format="channels_first").shape == (1, 6, 8)
    with pytest.warns(UserWarning, match="grayscale is deprecated"):
        assert load_img(path, grayscale=True).mode == "L"
    assert load_img(path, color_mode="rgba").mode == "RGBA"
    assert load_img(path, target_size=(3, 4)).size == (4, 3)  # (height, width) in, PIL (width, height) out
    assert load_img(path, target_size=(3, 4), interpolation="bilinear").size == (4, 3)
    square = load_img(path, target_size=(4, 4), keep_aspect_ratio=True)
    assert square.size == (4, 4)
    # keep_aspect_ratio crops the centre 6x6 of the 6x8 picture (columns 1..6, red 30..180) before
    # resizing; stretching samples all 8 columns (nearest: columns 1, 3, 5, 7).
    np.testing.assert_array_equal(img_to_array(square)[0, :, 0], [30, 90, 120, 180])
    np.testing.assert_array_equal(img_to_array(load_img(path, target_size=(4, 4)))[0, :, 0], [30, 90, 150, 210])
    with pytest.raises(ValueError, match="color_mode"):
        load_img(path, color_mode="cmyk")
    with pytest.raises(ValueError, match="interpolation"):
        load_img(path, target_size=(3, 3), interpolation="cubic-ish")
    with pytest.raises(TypeError, match="path-like"):
        load_img(123)


def test_array_to_img_and_save_img(tmp_path, pil):
    from kandle.preprocessing.image import array_to_img, img_to_array, load_img, save_img

    x = np.linspace(-1, 1, 4 * 5 * 3, dtype=np.float32).reshape(4, 5, 3)
    before = x.copy()
    img = array_to_img(x)
    np.testing.assert_array_equal(x, before)  # scaling works on a copy
    out = img_to_array(img)
    assert img.mode == "RGB" and out.min() == 0 and out.max() == 255
    assert array_to_img(np.full((2, 2, 1), 7.0), scale=False).mode == "L"
    assert array_to_img(np.full((2, 2, 1), 1000.0), scale=False).mode == "I"
    assert array_to_img(np.zeros((2, 2, 4))).mode == "RGBA"
    assert array_to_img(np.zeros((3, 2, 2)), data_format="channels_first").size == (2, 2)
    with pytest.raises(ValueError, match="rank 3"):
        array_to_img(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="channel"):
        array_to_img(np.zeros((2, 2, 2)))

    rgb = (np.arange(4 * 5 * 3).reshape(4, 5, 3) * 4).astype(np.float32)
    save_img(tmp_path / "a.png", rgb, scale=False)
    np.testing.assert_array_equal(img_to_array(load_img(tmp_path / "a.png")), rgb)
    with pytest.warns(UserWarning, match="RGBA"):
        save_img(str(tmp_path / "b.jpg"), np.zeros((4, 4, 4)))
    assert load_img(tmp_path / "b.jpg").size == (4, 4)


def test_missing_pillow_names_what_to_install(monkeypatch, tmp_path):
    from kandle.preprocessing import image

    monkeypatch.setitem(sys.modules, "PIL", None)
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    with pytest.raises(ImportError, match="pip install Pillow"):
        image.load_img(tmp_path / "x.png")
    with pytest.raises(ImportError, match="Pillow"):
        image.array_to_img(np.zeros((2, 2, 3)))
    # img_to_array needs only numpy
    assert image.img_to_array(np.zeros((2, 3))).shape == (2, 3, 1)


# -------------------------------------------------------------------- applications.imagenet_utils
def test_preprocess_input_modes():
    from kandle.applications.imagenet_utils import preprocess_input

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (2, 3, 4, 3)).astype(np.float64)

    caffe = preprocess_input(x.copy())
    np.testing.assert_allclose(caffe[..., 0], x[..., 2] - 103.939)
    np.testing.assert_allclose(caffe[..., 1], x[..., 1] - 116.779)
    np.testing.assert_allclose(caffe[..., 2], x[..., 0] - 123.68)
    np.testing.assert_allclose(preprocess_input(x.copy(), mode="tf"), x / 127.5 - 1)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(preprocess_input(x.copy(), mode="torch"), (x / 255 - mean) / std)

    xf = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    np.testing.assert_allclose(preprocess_input(xf.copy(), data_format="channels_first"),
                               caffe.transpose(0, 3, 1, 2))
    np.testing.assert_allclose(preprocess_input(xf[0].copy(), data_format="channels_first"),
                               caffe[0].transpose(2, 0, 1))
    np.testing.assert_allclose(preprocess_input(x[0].copy()), caffe[0])  # a single image


def test_preprocess_input_in_place_and_dtypes():
    from kandle.applications.imagenet_utils import preprocess_input

    x = np.full((1, 2, 2, 3), 127.5, np.float32)
    out = preprocess_input(x, mode="tf")
    assert np.shares_memory(out, x) and np.all(x == 0)  # Keras semantics: floats are processed in place
    u = np.full((1, 2, 2, 3), 255, np.uint8)
    out = preprocess_input(u, mode="tf")
    assert out.dtype == np.float32 and np.all(u == 255) and np.allclose(out, 1.0)
    out = preprocess_input([[[[0, 0, 0]]]], mode="caffe")
    np.testing.assert_allclose(out[0, 0, 0], [-103.939, -116.779, -123.68], rtol=1e-6)
    with pytest.raises(ValueError, match="mode"):
        preprocess_input(np.zeros((1, 2, 2, 3)), mode="keras")
    with pytest.raises(ValueError, match="data_format"):
        preprocess_input(np.zeros((1, 2, 2, 3)), data_format="nhwc")


def _fake_class_index():
    return {str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)}


def test_decode_predictions_with_loaded_index(monkeypatch):
    from kandle.applications import imagenet_utils

    monkeypatch.setattr(imagenet_utils, "CLASS_INDEX", _fake_class_index())
    preds = np.zeros((2, 1000), np.float32)
    preds[0, [3, 7, 999]] = [0.5, 0.3, 0.2]
    preds[1, 42] = 1.0
    out = imagenet_utils.decode_predictions(preds, top=3)
    assert [r[:2] for r in out[0]] == [("n00000003", "class_3"), ("n00000007", "class_7"), ("n00000999", "class_999")]
    assert out[0][0][2] == pytest.approx(0.5)
    assert out[1][0][:2] == ("n00000042", "class_42") and len(out[1]) == 3
    assert len(imagenet_utils.decode_predictions(preds)[0]) == 5
    with pytest.raises(ValueError, match=r"\(samples, 1000\)"):
        imagenet_utils.decode_predictions(np.zeros((2, 10)))
    with pytest.raises(ValueError, match=r"\(samples, 1000\)"):
        imagenet_utils.decode_predictions(np.zeros(1000))


def test_decode_predictions_fetches_and_caches_the_index(monkeypatch, tmp_path):
    """First use goes through get_file (here from a file:// URL, with the hash the module expects)
    into $KANDLE_HOME/models; a second process-wide use reads the cache."""
    from kandle.applications import imagenet_utils

    src = tmp_path / "src" / "imagenet_class_index.json"
    src.parent.mkdir()
    src.write_text(json.dumps(_fake_class_index()))
    monkeypatch.setenv("KANDLE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "no-keras"))
    monkeypatch.setattr(imagenet_utils, "CLASS_INDEX", None)
    monkeypatch.setattr(imagenet_utils, "CLASS_INDEX_PATH", src.as_uri())
    monkeypatch.setattr(imagenet_utils, "CLASS_INDEX_HASH", hashlib.md5(src.read_bytes()).hexdigest())
    preds = np.eye(1000, dtype=np.float32)[[5]]
    assert imagenet_utils.decode_predictions(preds, top=1) == [[("n00000005", "class_5", np.float32(1.0))]]
    assert (tmp_path / "home" / "models" / "imagenet_class_index.json").is_file()


def test_decode_predictions_uses_keras_cache_and_explains_offline(monkeypatch, tmp_path):
    from kandle.applications import imagenet_utils
    from kandle.utils.data_utils import DownloadError

    keras_copy = tmp_path / "keras" / "models" / "imagenet_class_index.json"
    keras_copy.parent.mkdir(parents=True)
    keras_copy.write_text(json.dumps(_fake_class_index()))
    monkeypatch.setenv("KANDLE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(imagenet_utils, "CLASS_INDEX", None)
    monkeypatch.setattr(imagenet_utils, "CLASS_INDEX_PATH", (tmp_path / "nowhere.json").as_uri())
    monkeypatch.setattr(imagenet_utils, "CLASS_INDEX_HASH", hashlib.md5(keras_copy.read_bytes()).hexdigest())
    assert imagenet_utils.decode_predictions(np.eye(1000)[[1]], top=1)[0][0][1] == "class_1"

    monkeypatch.setattr(imagenet_utils, "CLASS_INDEX", None)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty"))
    with pytest.raises(DownloadError, match="imagenet_class_index.json"):
        imagenet_utils.decode_predictions(np.eye(1000)[[1]])


# ------------------------------------------------------------------------------------ vis_utils
def _model():
    model = Sequential()
    model.add(Conv2D(4, (3, 3), activation="relu", input_shape=(8, 8, 3)))
    model.add(MaxPooling2D((2, 2)))
    model.add(Flatten())
    model.add(Dense(5, activation="softmax"))
    return model


def test_model_to_dot_graph():
    pytest.importorskip("pydot")
    from kandle.utils.vis_utils import model_to_dot

    model = _model()
    dot = model_to_dot(model, show_shapes=True)
    labels = [n.get_label() for n in dot.get_nodes() if n.get_name() not in ("node", "graph", "edge")]
    assert len(labels) == 5  # the implicit input, then the 4 layers
    assert labels[0].strip('"').startswith("conv2d_input: InputLayer")
    assert "conv2d: Conv2D" in labels[1] and "(None, 8, 8, 3)" in labels[1] and "(None, 6, 6, 4)" in labels[1]
    assert "dense: Dense" in labels[4] and "(None, 5)" in labels[4]
    assert len(dot.get_edges()) == 4
    assert dot.get("rankdir") == "TB"
    plain = model_to_dot(model, show_layer_names=False, rankdir="LR")
    names = [n.get_label().strip('"') for n in plain.get_nodes() if n.get_name() not in ("node", "graph", "edge")]
    assert names == ["InputLayer", "Conv2D", "MaxPooling2D", "Flatten", "Dense"]
    assert plain.get("rankdir") == "LR"
    assert "activation:|relu" in model_to_dot(model, show_layer_activations=True).to_string()


def test_model_to_dot_draws_a_functional_graph():
    pytest.importorskip("pydot")
    from kandle.layers import Add, Input
    from kandle.models import Model
    from kandle.utils.vis_utils import model_to_dot

    x = Input((4,), name="x")
    a, b = Dense(3, name="a")(x), Dense(3, name="b")(x)
    model = Model(x, Dense(2, name="out")(Add(name="sum")([a, b])))
    dot = model_to_dot(model)
    name_of = {n.get_name(): n.get_label().strip('"').split(":")[0] for n in dot.get_nodes()
               if n.get_name() not in ("node", "graph", "edge")}
    edges = sorted((name_of[e.get_source()], name_of[e.get_destination()]) for e in dot.get_edges())
    assert edges == [("a", "sum"), ("b", "sum"), ("sum", "out"), ("x", "a"), ("x", "b")]


def test_model_to_dot_unbuilt_model():
    pytest.importorskip("pydot")
    from kandle.utils.vis_utils import model_to_dot

    model = Sequential([Dense(3), Dense(2)])
    assert len(model_to_dot(model, show_shapes=True).get_edges()) == 1
    with pytest.raises(ValueError, match="no layers"):
        model_to_dot(Sequential())


def test_plot_model_writes_file(tmp_path):
    pytest.importorskip("pydot")
    from kandle.utils import plot_model as utils_plot_model
    from kandle.utils.vis_utils import check_graphviz, model_to_dot, plot_model

    if not check_graphviz():
        pytest.skip("Graphviz's dot program is not installed")
    model = _model()
    png = tmp_path / "sub" / "model.png"
    shown = plot_model(model, to_file=png, show_shapes=True)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if importlib.util.find_spec("IPython"):
        assert type(shown).__name__ == "Image"
    svg = tmp_path / "model.svg"
    assert utils_plot_model(model, to_file=str(svg), rankdir="LR") is None
    assert b"<svg" in svg.read_bytes()
    assert model_to_dot(model).create(prog="dot", format="svg").lstrip().startswith(b"<?xml")


def test_vis_utils_missing_dependencies_say_what_to_install(monkeypatch, tmp_path):
    from kandle.utils import vis_utils

    if importlib.util.find_spec("pydot"):
        monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` program anywhere
        with pytest.raises(ImportError, match="Graphviz"):
            vis_utils.plot_model(_model(), to_file=tmp_path / "m.png")
        assert not (tmp_path / "m.png").exists()
    monkeypatch.setitem(sys.modules, "pydot", None)
    with pytest.raises(ImportError, match=r"pip install pydot"):
        vis_utils.model_to_dot(_model())
    with pytest.raises(ImportError, match=r"pip install pydot"):
        vis_utils.plot_model(_model(), to_file=os.path.join(tmp_path, "m.png"))
