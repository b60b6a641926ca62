"""``kandle.applications``: so far only ``imagenet_utils`` (``preprocess_input``,
``decode_predictions``), which tutorials import alongside the pretrained models. The pretrained
models themselves (VGG16, ResNet50, ...) are not available in kandle.
"""

from kandle.applications import imagenet_utils

__all__ = ["imagenet_utils"]
