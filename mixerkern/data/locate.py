"""Finds a dataset's official files on disk, or downloads them into the cache.

Search order: ``data_dir`` (when given), then ``default_cache_dir()``, then a download from
``RemoteFile.url`` into the cache. Inside each of those roots the files may lie directly, or in
one of the spec's folder names (``cifar-10-batches-py``, ``mnist``, ``MNIST/raw``, ...); a CIFAR
archive is read as it is (no extraction needed).
"""
from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from .checks import DatasetError
from .sources import DatasetSpec, RemoteFile


def default_cache_dir() -> Path:
    """``$MIXERKERN_DATA`` if set, else ``~/.cache/mixerkern/data``."""
    return Path(os.environ.get("MIXERKERN_DATA") or Path.home() / ".cache" / "mixerkern" / "data").expanduser()


@dataclass(frozen=True)
class Located:
    """The files a split is read from (absolute paths).

    ``archive``: ``files`` is the one CIFAR ``.tar.gz``. Otherwise plain files: CIFAR
    ``(meta, batch, ...)`` of the extracted folder, or MNIST ``(images, labels)`` IDX files
    (gzip'd or not).
    """
    files: tuple[Path, ...]
    archive: bool = False


def locate(spec: DatasetSpec, split: str, data_dir: str | os.PathLike | None = None,
           download: bool = True) -> Located:
    roots = [Path(data_dir).expanduser()] if data_dir is not None else []
    roots.append(default_cache_dir())
    for root in roots:
        found = _find(spec, split, root)
        if found is not None:
            _warn_if_unofficial(spec, found)
            return found
    if not download:
        raise _not_found(spec, split, roots, "Downloading is off (download=False).")
    cache = roots[-1]
    target = cache if spec.cifar else cache / spec.folders[0]
    try:
        for remote in _remote_files(spec, split):
            if not (target / remote.filename).is_file():
                fetch(remote, target)
    except (OSError, ValueError) as error:  # URLError and socket timeouts are OSErrors
        raise _not_found(spec, split, roots, f"The download failed: {error}") from error
    found = _find(spec, split, cache)
    assert found is not None, f"{spec.name}: downloaded into {target} but could not find it there"
    return found


def fetch(remote: RemoteFile, dest_dir: Path) -> Path:
    """Downloads ``remote`` into ``dest_dir`` and checks its md5 on the way.

    Streams into a temporary file in ``dest_dir`` and renames it into place only once complete
    and verified, so an interrupted or corrupt download never looks like a usable file.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / remote.filename
    fd, part = tempfile.mkstemp(dir=dest_dir, prefix=f".{remote.filename}.", suffix=".part")
    digest = hashlib.md5()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(remote.url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=remote.filename, disable=None) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        if digest.hexdigest() != remote.md5:
            raise DatasetError(f"{target}: downloaded from {remote.url} with md5 {digest.hexdigest()}, "
                               f"expected {remote.md5}; deleted it (corrupt or tampered download)")
        os.replace(part, target)
    finally:
        Path(part).unlink(missing_ok=True)
    return target


def md5_of(path: Path) -> str:
    st = path.stat()
    return _md5(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _md5(path: str, size: int, mtime_ns: int) -> str:
    # Keyed by size and mtime too, so a replaced file is hashed again.
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _warn_if_unofficial(spec: DatasetSpec, found: Located) -> None:
    # A re-packed copy is still usable (its contents are validated while read), so only warn.
    # Uncompressed MNIST files and extracted CIFAR folders have no published md5 to compare.
    for path in found.files:
        remote = next((r for r in spec.files if r.filename == path.name), None)
        if remote is None and found.archive:  # data_dir named an archive saved under another name
            remote = spec.files[0]
        if remote is not None and (got := md5_of(path)) != remote.md5:
            warnings.warn(f"{path}: md5 {got} is not the official {remote.md5} of {remote.filename}; "
                          "loading it anyway (its contents are checked as they are read)", stacklevel=4)


def _remote_files(spec: DatasetSpec, split: str) -> list[RemoteFile]:
    if spec.cifar:
        return list(spec.files)
    return [f for f in spec.files if f.filename.removesuffix(".gz") in spec.splits[split]]


def _needed(spec: DatasetSpec, split: str) -> list[tuple[str, ...]]:
    """Per file a split needs in an extracted folder: the names it may have, preferred first."""
    if spec.cifar:
        return [(name,) for name in (spec.cifar.meta_member, *spec.splits[split])]
    return [(f"{stem}.gz", stem) for stem in spec.splits[split]]


def _folders(spec: DatasetSpec, root: Path) -> list[Path]:
    return [root, *(root / name for name in spec.folders)]


def _find(spec: DatasetSpec, split: str, root: Path) -> Located | None:
    if spec.cifar:
        archive = root if root.is_file() else root / spec.files[0].filename
        if archive.is_file():
            return Located((archive.resolve(),), archive=True)
    for folder in _folders(spec, root):
        files = [next((folder / n for n in names if (folder / n).is_file()), None)
                 for names in _needed(spec, split)]
        if all(files):
            return Located(tuple(f.resolve() for f in files))
    return None


def _not_found(spec: DatasetSpec, split: str, roots: list[Path], reason: str) -> DatasetError:
    remotes = _remote_files(spec, split)
    if spec.cifar:
        wanted = (f"{spec.files[0].filename}, or the extracted folder {spec.folders[0]}/ holding "
                  + ", ".join(names[0] for names in _needed(spec, split)))
    else:
        wanted = ", ".join(f.filename for f in remotes) + " (or the same names without .gz)"
    searched = "\n".join(f"  {folder}" for root in roots for folder in _folders(spec, root))
    urls = "\n".join(f"  {f.url}  (md5 {f.md5})" for f in remotes)
    put = roots[-1] if spec.cifar else roots[-1] / spec.folders[0]
    return DatasetError(
        f"{spec.title} ({split} split) not found. Looked for {wanted} in:\n{searched}\n{reason}\n"
        f"Fetch on a machine with network access:\n{urls}\n"
        f"and put {'it as it is' if len(remotes) == 1 else 'them as they are'} (no need to extract) in {put}, "
        f"or in a folder passed as data_dir= (or set MIXERKERN_DATA to choose the cache folder).")
