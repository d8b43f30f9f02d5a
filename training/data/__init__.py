"""FER2013 and FER+ for training: every form users have, decoded once, packed to travel, and split for a run."""

from .cache import CACHE_ENV, DATA_ENV, default_cache_dir, load_dataset, resolve_data_path
from .dataset import IMAGE_SIZE, SPLITS, DataError, FaceDataset, FaceSplit

__all__ = ["CACHE_ENV", "DATA_ENV", "IMAGE_SIZE", "SPLITS", "DataError", "FaceDataset", "FaceSplit", "default_cache_dir", "load_dataset",
           "resolve_data_path"]
