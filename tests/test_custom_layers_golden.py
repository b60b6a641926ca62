"""Custom layers, subclassed models and ops between layers against real Keras 3
(tests/golden/make_custom_layers.py): the same cases, seeded weights and data; forward outputs,
two epochs of SGD (losses and every weight after them) within 1e-4 relative."""

import os

import numpy as np
import pytest

import kandle
import _custom_layer_cases as cases

GOLDEN = np.load(os.path.join(os.path.dirname(__file__), "golden", "custom_layers.npz"))


@pytest.fixture(scope="module")
def results():
    return cases.run(kandle)


def close(a, b, rtol=1e-4, atol=1e-5):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", cases.NAMES)
def test_matches_keras(results, name):
    assert results[f"{name}/shapes"][0] == GOLDEN[f"{name}/shapes"][0]
    close(results[f"{name}/predict0"], GOLDEN[f"{name}/predict0"])
    close(results[f"{name}/loss"], GOLDEN[f"{name}/loss"])
    weights = sorted(k for k in GOLDEN.files if k.startswith(f"{name}/w"))
    assert weights and len(weights) == len([k for k in results if k.startswith(f"{name}/w")])
    for key in weights:
        close(results[key], GOLDEN[key])
    close(results[f"{name}/predict2"], GOLDEN[f"{name}/predict2"])
    metrics = sorted(k for k in GOLDEN.files if k.startswith(f"{name}/metric_"))
    assert metrics == sorted(k for k in results if k.startswith(f"{name}/metric_"))
    for key in metrics:
        close(results[key], GOLDEN[key])
