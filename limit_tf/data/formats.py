"""Readers for the datasets' original distribution files, and their checksums.

- IDX (MNIST, Fashion-MNIST): ``*-ubyte`` files, gzip-compressed or not.
- CIFAR-10/100 python pickles, from the extracted folder or the ``.tar.gz``.

Files under their original names are checked against the checksums their
publishers give (MNIST and Fashion-MNIST: SHA-256, as tensorflow-datasets
registers them; CIFAR: MD5), so a damaged or altered copy (an all-zero labels
file, a truncated download) stops the run with the file's name instead of
training silently on it. Pass ``verify=False`` to use a modified copy on
purpose.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import os
import pickle
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


class DataFileError(ValueError):
    """A data file is corrupt, altered or unreadable; the message names it."""


class UserDataError(ValueError):
    """The user's data cannot be used as it is; the message names what and where."""


@dataclasses.dataclass(frozen=True)
class RawData:
    """A dataset's official train and test arrays (uint8 images or float features)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


# --------------------------------------------------------------------------
# Checksums.

# file name -> (algorithm, hex digest) as published.
CHECKSUMS: Mapping[str, Mapping[str, tuple[str, str]]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": ("sha256", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        "train-labels-idx1-ubyte.gz": ("sha256", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        "t10k-images-idx3-ubyte.gz": ("sha256", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        "t10k-labels-idx1-ubyte.gz": ("sha256", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": ("sha256", "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
        "train-labels-idx1-ubyte.gz": ("sha256", "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
        "t10k-images-idx3-ubyte.gz": ("sha256", "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
        "t10k-labels-idx1-ubyte.gz": ("sha256", "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
    },
    "cifar10": {
        "cifar-10-python.tar.gz": ("md5", "c58f30108f718f92721af3b95e74349a"),
        "data_batch_1": ("md5", "c99cafc152244af753f735de768cd75f"),
        "data_batch_2": ("md5", "d4bba439e000b95fd0a9bffe97cbabec"),
        "data_batch_3": ("md5", "54ebc095f3ab1f0389bbae665268c751"),
        "data_batch_4": ("md5", "634d18415352ddfa80567beed471001a"),
        "data_batch_5": ("md5", "482c414d41f54cd18b22e5b47cb7c3cb"),
        "test_batch": ("md5", "40351d587109b95175f43aff81a1287e"),
    },
    "cifar100": {
        "cifar-100-python.tar.gz": ("md5", "eb9058c3a382ffc7106e4002c42a8d85"),
        "train": ("md5", "16019d7e3df5f24257cddd939b257f8d"),
        "test": ("md5", "f0ef6b0ae62326f3e7ffdfab6717acfc"),
    },
}


@functools.cache
def _digest(path: str, algorithm: str, size: int, mtime_ns: int) -> str:
    del size, mtime_ns  # part of the cache key: a changed file is hashed again
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_file(path: str | os.PathLike, dataset: str) -> None:
    """Checks a file against its published checksum (files without one pass).

    Raises:
      DataFileError: the file's checksum differs from the published one.
    """
    path = Path(path)
    expected = CHECKSUMS.get(dataset, {}).get(path.name)
    if expected is None:
        return
    algorithm, digest = expected
    stat = path.stat()
    actual = _digest(str(path), algorithm, stat.st_size, stat.st_mtime_ns)
    if actual != digest:
        raise DataFileError(
            f"data file {path} is not the published {dataset} file ({algorithm} {actual[:12]}... instead of "
            f"{digest[:12]}...): replace it with the original, or pass --noverify_data to use a modified copy."
        )


# --------------------------------------------------------------------------
# IDX.


def _open_maybe_gzip(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataFileError(
            f"data file {path} is corrupt or unreadable ({e}); replace it with the original file."
        ) from None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX file (the MNIST format), gzip-compressed or not.

    Raises:
      DataFileError: the file is not a valid uint8 IDX file (bad magic or size).
    """
    path = Path(path)
    data = _open_maybe_gzip(path)
    if len(data) < 8 or data[0] != 0 or data[1] != 0 or data[2] != 0x08 or not 1 <= data[3] <= 4:
        raise DataFileError(
            f"data file {path} is not a uint8 IDX file (bad header); replace it with the original file."
        )
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(data) - offset != expected:
        raise DataFileError(
            f"data file {path} is truncated or corrupt: header promises {expected} values of shape {tuple(dims)}, "
            f"found {len(data) - offset}."
        )
    return np.frombuffer(data, np.uint8, offset=offset).reshape(dims)


IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def find_idx_file(directory: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def idx_dir_complete(directory: Path) -> bool:
    return all(find_idx_file(directory, stem) for stem in IDX_FILES.values())


def read_idx_dataset(directory: Path, dataset: str, *, verify: bool = True) -> RawData:
    """The four IDX files of an MNIST-format dataset in ``directory``."""
    arrays = {}
    for key, stem in IDX_FILES.items():
        path = find_idx_file(directory, stem)
        if verify:
            verify_file(path, dataset)
        arrays[key] = read_idx(path)
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise DataFileError(f"idx files in {directory} disagree: {split} images {x.shape} vs labels {y.shape}.")
    return RawData(
        x_train=arrays["x_train"][..., None],
        y_train=arrays["y_train"].astype(np.int64),
        x_test=arrays["x_test"][..., None],
        y_test=arrays["y_test"].astype(np.int64),
    )


# --------------------------------------------------------------------------
# CIFAR python pickles.

CIFAR10_MEMBERS = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
CIFAR100_MEMBERS = {"train": ["train"], "test": ["test"]}


def _unpickle(blob: bytes, where: str) -> dict:
    try:
        return pickle.loads(blob, encoding="bytes")
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise DataFileError(f"data file {where} is corrupt or not a CIFAR python pickle ({e}).") from None


def _cifar_arrays(batch: dict, label_key: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        raise DataFileError(f"data file {where} lacks the keys 'data' and {label_key.decode()!r} of a CIFAR pickle.")
    x = np.asarray(batch[b"data"], np.uint8)
    if x.ndim != 2 or x.shape[1] != 3072:
        raise DataFileError(f"data file {where} holds images of shape {x.shape}: (N, 3072) is required.")
    x = x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return x, np.asarray(batch[label_key], np.int64)


def read_cifar(
    location: Path,
    members: Mapping[str, Sequence[str]],
    label_key: bytes,
    dataset: str,
    *,
    verify: bool = True,
) -> RawData:
    """Reads CIFAR pickles from an extracted folder or a ``.tar.gz`` archive."""
    blobs: dict[str, bytes] = {}
    wanted = [m for names in members.values() for m in names]
    if location.is_dir():
        for m in wanted:
            if verify:
                verify_file(location / m, dataset)
            blobs[m] = _open_maybe_gzip(location / m)
    else:
        if verify:
            verify_file(location, dataset)
        try:
            with tarfile.open(location, "r:gz") as tar:
                for info in tar.getmembers():
                    base = info.name.split("/", 1)[-1]
                    if base in wanted:
                        blobs[base] = tar.extractfile(info).read()
        except (OSError, EOFError, tarfile.TarError) as e:
            raise DataFileError(f"data file {location} is corrupt or not a tar.gz archive ({e}).") from None
        missing = [m for m in wanted if m not in blobs]
        if missing:
            raise DataFileError(f"data file {location} lacks the members {missing}.")
    out = {}
    for split, names in members.items():
        parts = [_cifar_arrays(_unpickle(blobs[m], f"{location}/{m}"), label_key, f"{location}/{m}") for m in names]
        out[f"x_{split}"] = np.concatenate([p[0] for p in parts])
        out[f"y_{split}"] = np.concatenate([p[1] for p in parts])
    return RawData(**out)


def cifar_dir_complete(members: Mapping[str, Sequence[str]]):
    return lambda p: p.is_dir() and all((p / m).is_file() for names in members.values() for m in names)
