"""mixerkern.data on tiny synthetic files in the exact official formats (and the real ones if present)."""
from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from mixerkern.data import DATASETS, DatasetError, ImageArrays, default_cache_dir, load_dataset

REAL_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Never read or write the user's real cache."""
    monkeypatch.setenv("MIXERKERN_DATA", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# --- CIFAR: protocol-2 pickles of dicts with bytes keys, in a tar.gz under the official folder ---

def _cifar_files(name: str, rng: np.random.Generator, per_batch: int = 3) -> tuple[dict[str, bytes], np.ndarray, np.ndarray]:
    spec = DATASETS[name]
    keys = spec.cifar
    files = {keys.meta_member: pickle.dumps({keys.names: [f"class{i}".encode() for i in range(spec.num_classes)]},
                                            protocol=2)}
    datas, labels = {}, {}
    for split, members in spec.splits.items():
        datas[split], labels[split] = [], []
        for member in members:
            data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
            label = [int(v) for v in rng.integers(0, spec.num_classes, per_batch)]
            files[member] = pickle.dumps({b"batch_label": member.encode(), keys.labels: label, b"data": data,
                                          b"filenames": [b"x.png"] * per_batch}, protocol=2)
            datas[split].append(data)
            labels[split].append(label)
    return files, {s: np.concatenate(d) for s, d in datas.items()}, {s: np.concatenate(v) for s, v in labels.items()}


def _write_tar(path: Path, folder: str, files: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for member, payload in files.items():
            info = tarfile.TarInfo(f"{folder}/{member}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def _write_folder(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True)
    for member, payload in files.items():
        (folder / member).write_bytes(payload)
    return folder


@pytest.fixture
def cifar10(tmp_path):
    files, data, labels = _cifar_files("cifar10", np.random.default_rng(0))
    data["train"][1, 1 * 1024 + 5 * 32 + 7] = 201  # known pixel: image 1, channel G, y=5, x=7
    files["data_batch_1"] = pickle.dumps({b"labels": list(map(int, labels["train"][:3])),
                                          b"data": data["train"][:3]}, protocol=2)
    archive = _write_tar(tmp_path / "a" / "cifar-10-python.tar.gz", "cifar-10-batches-py", files)
    return archive, files, data, labels


def _check(arrays: ImageArrays, data: np.ndarray, labels: np.ndarray, channels: int = 3) -> None:
    assert arrays.images.dtype == torch.uint8 and arrays.images.is_contiguous()
    assert arrays.labels.dtype == torch.int64
    side = 32 if channels == 3 else 28
    assert arrays.images.shape == (len(data), channels, side, side)
    assert torch.equal(arrays.images.flatten(1), torch.from_numpy(data.reshape(len(data), -1)))
    assert torch.equal(arrays.labels, torch.from_numpy(labels.astype(np.int64)))


def test_cifar10_round_trip_from_archive_and_folder(cifar10, tmp_path, monkeypatch):
    archive, files, data, labels = cifar10
    monkeypatch.setattr(DATASETS["cifar10"].files[0], "md5", _md5(archive))  # official md5: no warning
    folder = _write_folder(tmp_path / "b" / "cifar-10-batches-py", files)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for data_dir in (archive.parent, archive, folder.parent, folder):
            train = load_dataset("cifar10", "train", data_dir=data_dir, download=False)
            _check(train, data["train"], labels["train"])
            assert train.images[1, 1, 5, 7] == 201
            assert train.class_names == [f"class{i}" for i in range(10)] and train.num_classes == 10
            _check(load_dataset("cifar10", "test", data_dir=data_dir, download=False), data["test"], labels["test"])


def test_cifar100_round_trip(tmp_path):
    files, data, labels = _cifar_files("cifar100", np.random.default_rng(1), per_batch=5)
    archive = _write_tar(tmp_path / "cifar-100-python.tar.gz", "cifar-100-python", files)
    with pytest.warns(UserWarning, match="md5"):
        test = load_dataset("cifar100", "test", data_dir=tmp_path, download=False)
    _check(test, data["test"], labels["test"])
    assert test.num_classes == 100 and len(test.class_names) == 100
    assert archive.exists()


def test_unofficial_md5_loads_with_warning(cifar10):
    archive, _, data, labels = cifar10
    with pytest.warns(UserWarning, match=f"{archive}.*md5 {_md5(archive)}.*{DATASETS['cifar10'].files[0].md5}"):
        _check(load_dataset("cifar10", "test", data_dir=archive.parent), data["test"], labels["test"])


def test_subset(cifar10):
    archive, _, data, labels = cifar10
    with pytest.warns(UserWarning):
        train = load_dataset("cifar10", "train", data_dir=archive.parent)
    assert len(train) == 15
    for index in (slice(2, 12, 3), torch.tensor([14, 0, 3])):
        part = train.subset(index)
        assert isinstance(part, ImageArrays) and part.images.is_contiguous()
        rows = index if isinstance(index, slice) else index.numpy()
        _check(part, data["train"][rows], labels["train"][rows])


# --- MNIST: gzip'd IDX files ---

def _idx(magic: int, array: np.ndarray) -> bytes:
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()


def _write_mnist(folder: Path, n: int = 7, compress: bool = True, **override: bytes) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix in ("train", "t10k"):
        for stem, payload in ((f"{prefix}-images-idx3-ubyte", _idx(0x803, images)),
                              (f"{prefix}-labels-idx1-ubyte", _idx(0x801, labels))):
            payload = override.get(stem, payload)
            if compress:
                (folder / f"{stem}.gz").write_bytes(gzip.compress(payload))
            else:
                (folder / stem).write_bytes(payload)
    return images, labels


@pytest.mark.parametrize("sub, compress", [("", True), ("mnist", False), ("MNIST/raw", True)])
def test_mnist_round_trip(tmp_path, sub, compress):
    images, labels = _write_mnist(tmp_path / sub, compress=compress)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # synthetic .gz files: non-official md5
        for split in ("train", "test"):
            arrays = load_dataset("mnist", split, data_dir=tmp_path, download=False)
            _check(arrays, images, labels, channels=1)
            assert arrays.images[3, 0, 4, 9] == images[3, 4, 9]
            assert arrays.class_names == [str(d) for d in range(10)]


# --- corrupt and hostile files: DatasetError naming the file ---

def _expect_error(data_dir: Path, name: str, culprit: Path, match: str, split: str = "train") -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DatasetError, match=match) as info:
            load_dataset(name, split, data_dir=data_dir, download=False)
    assert str(culprit) in str(info.value)


def test_truncated_archive(cifar10):
    archive = cifar10[0]
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    _expect_error(archive.parent, "cifar10", archive, "")


def test_archive_missing_member(tmp_path, cifar10):
    files = dict(cifar10[1])
    del files["data_batch_4"]
    archive = _write_tar(tmp_path / "c" / "cifar-10-python.tar.gz", "cifar-10-batches-py", files)
    _expect_error(archive.parent, "cifar10", archive, "data_batch_4")


def test_cifar_labels_out_of_range(tmp_path, cifar10):
    files = dict(cifar10[1])
    files["test_batch"] = pickle.dumps({b"labels": [0, 10, 1], b"data": np.zeros((3, 3072), np.uint8)}, protocol=2)
    folder = _write_folder(tmp_path / "c" / "cifar-10-batches-py", files)
    _expect_error(folder.parent, "cifar10", folder / "test_batch", "label 10", split="test")


def test_cifar_wrong_data_shape(tmp_path, cifar10):
    files = dict(cifar10[1])
    files["test_batch"] = pickle.dumps({b"labels": [0], b"data": np.zeros((1, 3000), np.uint8)}, protocol=2)
    archive = _write_tar(tmp_path / "c" / "cifar-10-python.tar.gz", "cifar-10-batches-py", files)
    _expect_error(archive.parent, "cifar10", archive, r"test_batch.*shape \(N, 3072\)", split="test")


def test_pickle_importing_os_system_is_refused(tmp_path, cifar10):
    marker = tmp_path / "pwned"
    files = dict(cifar10[1])
    files["test_batch"] = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    for archive in (False, True):
        root = tmp_path / f"evil{archive}"
        if archive:
            _write_tar(root / "cifar-10-python.tar.gz", "cifar-10-batches-py", files)
            culprit = root / "cifar-10-python.tar.gz"
        else:
            culprit = _write_folder(root / "cifar-10-batches-py", files) / "test_batch"
        _expect_error(root, "cifar10", culprit, "refused to import os.system", split="test")
    assert not marker.exists()


@pytest.mark.parametrize("stem, payload, match", [
    ("train-images-idx3-ubyte", _idx(0x803, np.zeros((7, 28, 28)))[:-5], "truncated"),
    ("train-labels-idx1-ubyte", _idx(0x803, np.zeros((7, 1, 1))), "magic number 0x00000803, expected 0x00000801"),
    ("train-labels-idx1-ubyte", _idx(0x801, np.array([0, 1, 2, 3, 4, 5, 10])), "label 10 at index 6"),
    ("train-labels-idx1-ubyte", _idx(0x801, np.zeros(6)), "6 labels for the 7 images"),
    ("train-images-idx3-ubyte", _idx(0x803, np.zeros((7, 32, 32))), r"dimensions \[7, 32, 32\]"),
])
def test_mnist_corrupt(tmp_path, stem, payload, match):
    _write_mnist(tmp_path, **{stem: payload})
    _expect_error(tmp_path, "mnist", tmp_path / f"{stem}.gz", match)


def test_mnist_truncated_gzip(tmp_path):
    _write_mnist(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-100])
    _expect_error(tmp_path, "mnist", path, "truncated or corrupt", split="test")


# --- missing files and downloads (file:// URLs stand in for the network) ---

def test_missing_without_download_says_where_to_put_files(tmp_path, _cache):
    for name, split in (("cifar10", "train"), ("mnist", "test")):
        with pytest.raises(DatasetError) as info:
            load_dataset(name, split, data_dir=tmp_path / "nowhere", download=False)
        message = str(info.value)
        for expected in (str(tmp_path / "nowhere"), str(_cache), "download=False", DATASETS[name].files[-1].url):
            assert expected in message


def test_download_checks_md5(cifar10, tmp_path, _cache, monkeypatch):
    archive, _, data, labels = cifar10
    remote = DATASETS["cifar10"].files[0]
    monkeypatch.setattr(remote, "url", archive.as_uri())
    monkeypatch.setattr(remote, "md5", "0" * 32)
    with pytest.raises(DatasetError, match=f"md5 {_md5(archive)}, expected {'0' * 32}; deleted") as info:
        load_dataset("cifar10", "test")
    assert str(_cache / "cifar-10-python.tar.gz") in str(info.value)
    assert list(_cache.iterdir()) == []  # neither the file nor a partial download is left

    monkeypatch.setattr(remote, "md5", _md5(archive))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _check(load_dataset("cifar10", "test"), data["test"], labels["test"])
    assert default_cache_dir() == _cache and _md5(_cache / "cifar-10-python.tar.gz") == _md5(archive)


def test_mnist_download_goes_to_cache_mnist_folder(tmp_path, _cache, monkeypatch):
    images, labels = _write_mnist(tmp_path / "mirror")
    for remote in DATASETS["mnist"].files:
        source = tmp_path / "mirror" / remote.filename
        monkeypatch.setattr(remote, "url", source.as_uri())
        monkeypatch.setattr(remote, "md5", _md5(source))
    _check(load_dataset("mnist", "test"), images, labels, channels=1)
    assert sorted(p.name for p in (_cache / "mnist").iterdir()) == ["t10k-images-idx3-ubyte.gz",
                                                                     "t10k-labels-idx1-ubyte.gz"]


def test_download_failure_is_reported(tmp_path, monkeypatch, _cache):
    monkeypatch.setattr(DATASETS["cifar100"].files[0], "url", (tmp_path / "absent.tar.gz").as_uri())
    with pytest.raises(DatasetError, match="(?s)not found.*download failed.*absent.tar.gz"):
        load_dataset("cifar100", "train")


def test_bad_arguments():
    with pytest.raises(ValueError, match="name must be one of .*cifar10"):
        load_dataset("imagenet", "train")
    with pytest.raises(ValueError, match="split must be one of .*'train', 'test'"):
        load_dataset("mnist", "val")


# --- the real files, when this checkout sits next to shared/data ---

@pytest.mark.skipif(not REAL_DATA.is_dir(), reason="no shared/data next to the checkout")
def test_real_data():
    for split, n in (("train", 60000), ("test", 10000)):
        mnist = load_dataset("mnist", split, data_dir=REAL_DATA / "mnist", download=False)
        assert mnist.images.shape == (n, 1, 28, 28)
        counts = torch.bincount(mnist.labels, minlength=10)
        assert counts.sum() == n and len(counts) == 10 and (counts > 0.08 * n).all() and (counts < 0.12 * n).all()
    if not (REAL_DATA / "cifar-10-python.tar.gz").exists():
        return
    with pytest.warns(UserWarning, match="md5"):  # the shared copy is re-packed, not the official file
        cifar = load_dataset("cifar10", "test", data_dir=REAL_DATA, download=False)
    assert cifar.images.shape == (10000, 3, 32, 32) and cifar.class_names[0] == "airplane"
    counts = torch.bincount(cifar.labels, minlength=10)
    assert len(counts) == 10 and (counts > 900).all() and (counts < 1100).all()
    red, _, blue = cifar.images.float().mean(dim=(0, 2, 3)) / 255  # CHW order: red is brighter than blue
    assert 0.45 < red < 0.52 and 0.40 < blue < 0.47 and red > blue + 0.02
