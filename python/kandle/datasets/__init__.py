"""Owns the ``kandle.datasets`` namespace: Keras's small benchmark datasets as NumPy arrays
(``cifar10``, ``cifar100``, ``mnist``), each with a Keras-compatible ``load_data()``.

The loaders are pure Python + NumPy, so they work before (and without) the compiled core.
"""

from kandle.datasets import cifar10, cifar100, mnist

__all__ = ["cifar10", "cifar100", "mnist"]
