"""``kandle.preprocessing``: Keras's preprocessing utilities that tutorials import.

Only the image helpers exist so far (``kandle.preprocessing.image``: ``load_img``, ``img_to_array``,
``array_to_img``, ``save_img``), so that ``from keras.preprocessing import image`` and
``from keras.preprocessing.image import load_img, img_to_array`` port by renaming ``keras`` to ``kandle``.
"""

from kandle.preprocessing import image

__all__ = ["image"]
