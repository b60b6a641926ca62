"""``kandle.utils.image_dataset_from_directory``: Keras 3's file order, labels, splits and modes, on
small folders of PNGs made here (one solid colour per class, so every pixel can be checked)."""

import numpy as np
import pytest
from PIL import Image

import kandle
from kandle import layers, models, utils

COLOURS = {"cat": (200, 10, 10), "dog": (10, 200, 10), "emu": (10, 10, 200)}


@pytest.fixture
def folder(tmp_path):
    for k, (name, colour) in enumerate(COLOURS.items()):
        (tmp_path / name).mkdir()
        for i in range(4 + k):
            size = (12 + i, 9) if i % 2 else (9, 9)
            Image.new("RGB", size, colour).save(tmp_path / name / f"{i}.png")
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    return tmp_path


def every(ds):
    xs, ys = zip(*ds)
    return np.concatenate(xs), np.concatenate(ys)


def test_labels_follow_the_sorted_class_folders(folder, capsys):
    ds = utils.image_dataset_from_directory(folder, image_size=(6, 5), batch_size=4, shuffle=False)
    assert "Found 15 files belonging to 3 classes." in capsys.readouterr().out
    assert ds.class_names == ["cat", "dog", "emu"] and len(ds) == 4 and len(ds.file_paths) == 15
    x, y = every(ds)
    assert x.shape == (15, 6, 5, 3) and x.dtype == np.float32 and y.dtype == np.int32
    assert list(y) == [0] * 4 + [1] * 5 + [2] * 6
    for image, label in zip(x, y):
        np.testing.assert_array_equal(image, np.broadcast_to(COLOURS[ds.class_names[label]], (6, 5, 3)))


@pytest.mark.parametrize("mode, shape, dtype", [("categorical", (15, 3), np.float32), ("int", (15,), np.int32)])
def test_label_modes(folder, mode, shape, dtype):
    _, y = every(utils.image_dataset_from_directory(folder, label_mode=mode, image_size=(4, 4), seed=1, verbose=False))
    assert y.shape == shape and y.dtype == dtype


def test_grayscale_binary_and_no_labels(tmp_path, folder):
    two = utils.image_dataset_from_directory(folder, class_names=["dog", "cat"], label_mode="binary",
                                             color_mode="grayscale", image_size=(3, 3), seed=2, verbose=False)
    x, y = every(two)
    assert two.class_names == ["dog", "cat"] and x.shape == (9, 3, 3, 1) and y.shape == (9, 1)
    assert sorted(y.ravel().tolist()) == [0.0] * 5 + [1.0] * 4
    images = utils.image_dataset_from_directory(folder, labels=None, image_size=(3, 3), verbose=False)
    assert images[0].shape == (15, 3, 3, 3)  # every image below the folder, in one batch of up to 32


def test_validation_split_is_disjoint_and_seeded(folder):
    train, val = utils.image_dataset_from_directory(folder, validation_split=0.2, subset="both", seed=7,
                                                    image_size=(4, 4), verbose=False)
    assert len(train.file_paths) == 12 and len(val.file_paths) == 3
    assert not set(train.file_paths) & set(val.file_paths)
    again = utils.image_dataset_from_directory(folder, validation_split=0.2, subset="validation", seed=7,
                                               image_size=(4, 4), verbose=False)
    assert again.file_paths == val.file_paths
    other = utils.image_dataset_from_directory(folder, validation_split=0.2, subset="validation", seed=8,
                                               image_size=(4, 4), verbose=False)
    assert other.file_paths != val.file_paths


def test_crop_and_pad_to_aspect_ratio(tmp_path):
    (tmp_path / "a").mkdir()
    img = np.zeros((4, 8, 3), np.uint8)
    img[:, 2:6] = 255  # a white centre square in a black 8x4 image
    Image.fromarray(img).save(tmp_path / "a" / "x.png")
    cropped = utils.image_dataset_from_directory(tmp_path, image_size=(4, 4), crop_to_aspect_ratio=True,
                                                 interpolation="nearest", verbose=False)[0][0][0]
    assert cropped.min() == 255.0  # only the centre square is left
    padded = utils.image_dataset_from_directory(tmp_path, image_size=(8, 8), pad_to_aspect_ratio=True,
                                                interpolation="nearest", verbose=False)[0][0][0]
    assert padded[:2].max() == 0.0 and padded[2:6, 2:6].min() == 255.0


def test_fit_evaluate_and_predict_read_it(folder):
    train = utils.image_dataset_from_directory(folder, image_size=(8, 8), batch_size=5, seed=3, verbose=False)
    model = models.Sequential([layers.Input((8, 8, 3)), layers.Flatten(), layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["acc"])
    history = model.fit(train.map(lambda x, y: (x / 255.0, y)).prefetch(2), epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    assert len(model.evaluate(train, verbose=0)) == 2
    assert model.predict(utils.image_dataset_from_directory(folder, labels=None, image_size=(8, 8), verbose=False),
                         verbose=0).shape == (15, 3)
    first = [b[1].tolist() for b in train.take(2)]
    train.on_epoch_end()  # shuffle=True: a new order each epoch
    assert [b[1].tolist() for b in train.take(2)] != first or len(train) == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"validation_split": 0.2}, "If `subset` is set, `validation_split` must be set"),
    ({"validation_split": 0.2, "subset": "training"}, "you must provide a `seed`"),
    ({"label_mode": "binary"}, "there must be exactly 2 class_names"),
    ({"class_names": ["cat", "cow"]}, "did not match the names of the subdirectories"),
    ({"color_mode": "cmyk"}, "`color_mode` must be one of"),
    ({"subset": "test", "validation_split": 0.5, "seed": 1}, "`subset` must be either"),
])
def test_bad_arguments(folder, kwargs, message):
    with pytest.raises(ValueError, match=message):
        utils.image_dataset_from_directory(folder, verbose=False, **kwargs)


def test_an_empty_folder_says_so(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(ValueError, match="No images found in directory"):
        utils.image_dataset_from_directory(tmp_path, verbose=False)
    with pytest.raises(ValueError, match="Could not find directory"):
        kandle.utils.image_dataset_from_directory(tmp_path / "missing")
