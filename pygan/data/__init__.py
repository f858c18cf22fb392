"""Shared image data sources: the embedded digits (with their fixed held-out split), folders of images, .npz and
MNIST idx files, and any torch Dataset — each loaded as one ImageData."""

from pygan.data.images import (DIGITS_HOLDOUT, IMAGE_EXTENSIONS, DataError, ImageData, digits_split, from_dataset,
                               image_folder, load, load_file, open_image, read_idx)

__all__ = ["DIGITS_HOLDOUT", "IMAGE_EXTENSIONS", "DataError", "ImageData", "digits_split", "from_dataset",
           "image_folder", "load", "load_file", "open_image", "read_idx"]
