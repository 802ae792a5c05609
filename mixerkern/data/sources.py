"""Where each dataset is published and how its official files are laid out.

The specs are plain (mutable) dataclasses on purpose: tests point ``RemoteFile.url`` at a
``file://`` archive with ``monkeypatch.setattr`` to exercise the download path offline.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RemoteFile:
    """One file exactly as the dataset's authors publish it (the md5 is of that file)."""
    filename: str
    url: str
    md5: str


@dataclass
class CifarKeys:
    """Pickle keys of the CIFAR python version (bytes: the files are Python 2 pickles)."""
    meta_member: str          # file holding the class names
    labels: bytes             # key of the label list in each batch
    names: bytes              # key of the class-name list in the meta file


@dataclass
class DatasetSpec:
    name: str
    title: str
    num_classes: int
    image_shape: tuple[int, int, int]           # (C, H, W)
    files: list[RemoteFile]                     # CIFAR: the one archive; MNIST: four .gz files
    folders: tuple[str, ...]                    # extracted folder names looked for inside a data dir
    splits: dict[str, tuple[str, ...]]          # CIFAR: batch members; MNIST: (images, labels) IDX names
    cifar: CifarKeys | None = None              # None: the MNIST IDX format
    class_names: tuple[str, ...] = field(default=())  # fixed names when the files carry none


_KRIZ = "https://www.cs.toronto.edu/~kriz/"
# yann.lecun.com no longer serves the files reliably; this is the mirror PyTorch itself uses.
_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"


def _mnist_file(stem: str, md5: str) -> RemoteFile:
    return RemoteFile(f"{stem}.gz", f"{_MNIST}{stem}.gz", md5)


DATASETS: dict[str, DatasetSpec] = {
    "cifar10": DatasetSpec(
        name="cifar10", title="CIFAR-10", num_classes=10, image_shape=(3, 32, 32),
        files=[RemoteFile("cifar-10-python.tar.gz", _KRIZ + "cifar-10-python.tar.gz",
                          "c58f30108f718f92721af3b95e74349a")],
        folders=("cifar-10-batches-py",),
        splits={"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
        cifar=CifarKeys(meta_member="batches.meta", labels=b"labels", names=b"label_names"),
    ),
    "cifar100": DatasetSpec(
        name="cifar100", title="CIFAR-100", num_classes=100, image_shape=(3, 32, 32),
        files=[RemoteFile("cifar-100-python.tar.gz", _KRIZ + "cifar-100-python.tar.gz",
                          "eb9058c3a382ffc7106e4002c42a8d85")],
        folders=("cifar-100-python",),
        splits={"train": ("train",), "test": ("test",)},
        cifar=CifarKeys(meta_member="meta", labels=b"fine_labels", names=b"fine_label_names"),
    ),
    "mnist": DatasetSpec(
        name="mnist", title="MNIST", num_classes=10, image_shape=(1, 28, 28),
        files=[_mnist_file("train-images-idx3-ubyte", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
               _mnist_file("train-labels-idx1-ubyte", "d53e105ee54ea40749a09fcbcd1e9432"),
               _mnist_file("t10k-images-idx3-ubyte", "9fb629c4189551a2d022fa330f9573f3"),
               _mnist_file("t10k-labels-idx1-ubyte", "ec29112dd5afa0611ce80d1b7f02629c")],
        folders=("mnist", "MNIST/raw"),  # the second is torchvision's layout
        splits={"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")},
        class_names=tuple(str(d) for d in range(10)),
    ),
}
