"""Reads the CIFAR-10/100 "python version" straight from its .tar.gz or its extracted folder.

Format: each batch file (``data_batch_1`` .. ``_5`` / ``test_batch``; CIFAR-100 ``train`` /
``test``) is a protocol-2 pickle of a dict with bytes keys (Python 2 str, so
``encoding="bytes"``): ``b"data"`` a uint8 ndarray (N, 3072), each row 1024 red, then 1024
green, then 1024 blue values of a 32x32 image in row-major order, and ``b"labels"`` (CIFAR-100:
``b"fine_labels"``) a list of N ints. The meta file (``batches.meta`` / ``meta``) holds the class
names under ``b"label_names"`` / ``b"fine_label_names"``.
"""
from __future__ import annotations

import pickle
import tarfile
import zlib
from pathlib import Path
from typing import IO

import numpy as np

from .checks import DatasetError, check_labels
from .locate import Located
from .sources import DatasetSpec

# numpy's own name for the array rebuilder moved (numpy.core -> numpy._core); take the object.
_RECONSTRUCT = np.zeros(0).__reduce__()[0]


def _latin1(text: str, encoding: str) -> bytes:
    # Python 3 pickles bytes at protocol 2 as _codecs.encode(text, "latin1"); allow only that,
    # not the other codecs (zlib, base64, ...) the function would also run.
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _empty_bytes(*args: object) -> bytes:
    # Python 3 pickles b"" at protocol 2 as bytes(); refuse bytes(n), which allocates n bytes.
    if args:
        raise pickle.UnpicklingError("refused bytes() with arguments")
    return b""


# Everything a CIFAR batch (official or re-written by Python 3) refers to by name. Any other
# global (os.system, builtins.eval, ...) is how a malicious pickle runs code: refuse it.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1,
    ("__builtin__", "bytes"): _empty_bytes,
    ("builtins", "bytes"): _empty_bytes,
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused to import {module}.{name} (a CIFAR batch needs only "
                                         "numpy arrays, lists, dicts and bytes)") from None


def _unpickle(f: IO[bytes], source: str) -> object:
    try:
        return _SafeUnpickler(f, encoding="bytes").load()
    except Exception as error:  # a malformed pickle can raise almost anything; name the file
        raise DatasetError(f"{source}: cannot unpickle ({type(error).__name__}: {error})") from error


def _from_archive(path: Path, folder: str, members: list[str]) -> dict[str, object]:
    """Unpickles ``folder/member`` for each member, streaming through the archive once."""
    wanted = {f"{folder}/{m}": m for m in members}
    found: dict[str, object] = {}
    try:
        with tarfile.open(path, "r|gz") as tar:
            for info in tar:
                name = info.name.removeprefix("./")
                if name in wanted and info.isfile():
                    found[wanted[name]] = _unpickle(tar.extractfile(info), f"{path}: {name}")
                    if len(found) == len(wanted):
                        break
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise DatasetError(f"{path}: not a readable .tar.gz ({type(error).__name__}: {error}); "
                           "a truncated download?") from error
    missing = [f"{folder}/{m}" for m in members if m not in found]
    if missing:
        raise DatasetError(f"{path}: the archive has no member {', '.join(missing)} "
                           "(truncated, or not the official CIFAR python version?)")
    return found


def _from_files(paths: tuple[Path, ...]) -> list[object]:
    out = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                out.append(_unpickle(f, str(path)))
        except OSError as error:
            raise DatasetError(f"{path}: cannot read ({error})") from error
    return out


def _field(batch: object, key: bytes, source: str) -> object:
    if not isinstance(batch, dict) or key not in batch:
        found = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise DatasetError(f"{source}: expected a dict with key {key!r}, found {found}")
    return batch[key]


def _images(batch: object, spec: DatasetSpec, source: str) -> tuple[np.ndarray, np.ndarray]:
    data = _field(batch, b"data", source)
    row = int(np.prod(spec.image_shape))
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == row):
        shape = (data.dtype, data.shape) if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetError(f"{source}: b'data' must be a uint8 array of shape (N, {row}), got {shape}")
    try:
        labels = np.asarray(_field(batch, spec.cifar.labels, source))
    except ValueError as error:  # ragged or mixed-type list
        raise DatasetError(f"{source}: {spec.cifar.labels!r} is not a list of ints ({error})") from error
    return data, check_labels(labels, len(data), spec.num_classes, source)


def _class_names(meta: object, spec: DatasetSpec, source: str) -> list[str]:
    names = _field(meta, spec.cifar.names, source)
    if not (isinstance(names, list) and len(names) == spec.num_classes
            and all(isinstance(n, (bytes, str)) for n in names)):
        raise DatasetError(f"{source}: {spec.cifar.names!r} must be a list of {spec.num_classes} names")
    return [n.decode("latin1") if isinstance(n, bytes) else n for n in names]


def read_cifar(spec: DatasetSpec, split: str, located: Located) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Returns (images uint8 (N, 3, 32, 32), labels int64 (N,), class names), in file order."""
    members = [spec.cifar.meta_member, *spec.splits[split]]
    if located.archive:
        path = located.files[0]
        by_member = _from_archive(path, spec.folders[0], members)
        sources = [f"{path}: {spec.folders[0]}/{m}" for m in members]
        pickles = [by_member[m] for m in members]
    else:
        sources = [str(p) for p in located.files]
        pickles = _from_files(located.files)
    names = _class_names(pickles[0], spec, sources[0])
    batches = [_images(b, spec, s) for b, s in zip(pickles[1:], sources[1:])]
    # concatenate also copies, so the result is writable even when unpickled from immutable bytes
    images = np.concatenate([d for d, _ in batches]).reshape(-1, *spec.image_shape)
    return images, np.concatenate([lab for _, lab in batches]), names
