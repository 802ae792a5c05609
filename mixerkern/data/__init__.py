"""Image-classification datasets (CIFAR-10, CIFAR-100, MNIST) read from their official files.

>>> from mixerkern.data import load_dataset
>>> train = load_dataset("cifar10", "train", data_dir="~/data")  # doctest: +SKIP
>>> train.images.shape, train.labels.shape                       # doctest: +SKIP
(torch.Size([50000, 3, 32, 32]), torch.Size([50000]))
"""
from .checks import DatasetError
from .datasets import ImageArrays, load_dataset
from .locate import default_cache_dir
from .sources import DATASETS

__all__ = ["ImageArrays", "load_dataset", "DATASETS", "DatasetError", "default_cache_dir"]
