"""Shared image data sources: the embedded digits (with their fixed held-out split), folders of images (scanned once,
cached), .npz and MNIST idx files, and any torch Dataset - loaded as one ImageData, or served batch by batch, in
memory or streamed through DataLoader workers, by a batch source (pygan.data.batches)."""

from pygan.data.errors import DataError
from pygan.data.batches import BatchSource, InMemory, SourceOptions, Streaming, batch_source
from pygan.data.folder import IMAGE_EXTENSIONS, FolderIndex, scan_folder
from pygan.data.stream import CropBatches, GlobalBatches
from pygan.data.images import (DIGITS_HOLDOUT, ImageData, decode_image, digits_split, from_dataset,
                               image_folder, load, load_file, open_image, read_idx, read_image, to_float)
from pygan.data.paired import PairedImages, PairedInMemory, image_files, load_paired, pair_files

__all__ = ["BatchSource", "CropBatches", "GlobalBatches", "DIGITS_HOLDOUT", "DataError", "FolderIndex",
           "IMAGE_EXTENSIONS", "ImageData", "InMemory", "SourceOptions", "Streaming", "batch_source", "decode_image", "digits_split", "from_dataset",
           "image_folder", "load", "load_file", "open_image", "read_idx", "read_image", "scan_folder", "to_float", "PairedImages",
           "PairedInMemory", "image_files", "load_paired", "pair_files"]
