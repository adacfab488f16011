"""Datasets with label noise, in the paper's protocol, as numpy splits and ``tf.data``.

Sources, in the order they are tried (``source="auto"``):

1. **Local files** in their original distribution formats under a data
   directory (the ``data_dir`` argument, else ``$LIMIT_DATA_DIR``):
   MNIST / Fashion-MNIST idx ``.gz`` files, CIFAR-10/100 python pickles
   (extracted folder or the ``.tar.gz``). Read directly with numpy: seconds.
2. **tensorflow-datasets**, already prepared under ``<data_dir>/tfds``.
3. **tensorflow-datasets download**, only when ``allow_download=True``.
   Nothing ever waits on tfds' network retries: whether a download may
   happen is decided before tfds is called.

``source="tfds"`` forces the tfds path; tfds then prepares the dataset offline
from the same local files (its ``manual_dir``), since they match its
checksums (for CIFAR tfds wants the *binary* tarballs).

Protocol (``../shared/DESIGN.md`` section 4): the official training set is
split into train/validation (MNIST 48k/12k, CIFAR 40k/10k); a training subset
of ``n`` examples is drawn from the train part; the same noise model corrupts
train and validation labels (validation can be kept clean); the official
test set stays clean. One seed fixes split, subset and noise; it is separate
from the weights' seed. Subsets are nested: for one seed, the first ``n``
training examples and their noisy labels do not depend on ``n``.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import pickle
import tarfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from limit_tf import noise as noise_lib

DATA_DIR_ENV = "LIMIT_DATA_DIR"
SOURCES = ("auto", "local", "tfds")


class DataNotFoundError(FileNotFoundError):
    """The requested dataset is not available offline and no download is allowed."""


@dataclasses.dataclass(frozen=True)
class RawData:
    """A dataset's official train and test arrays (uint8 images or float features)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


# --------------------------------------------------------------------------
# Local readers for the original distribution formats.


def _open_maybe_gzip(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise ValueError(
            f"data file {path} is corrupt or unreadable ({e}); replace it with the original file."
        ) from None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX file (the MNIST format), gzip-compressed or not.

    Raises:
      ValueError: the file is not a valid uint8 IDX file (bad magic or size).
    """
    path = Path(path)
    data = _open_maybe_gzip(path)
    if len(data) < 8 or data[0] != 0 or data[1] != 0 or data[2] != 0x08 or not 1 <= data[3] <= 4:
        raise ValueError(f"data file {path} is not a uint8 IDX file (bad header); replace it with the original file.")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(data) - offset != expected:
        raise ValueError(
            f"data file {path} is truncated or corrupt: header promises {expected} values of shape {tuple(dims)}, "
            f"found {len(data) - offset}."
        )
    return np.frombuffer(data, np.uint8, offset=offset).reshape(dims)


_IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def _find_file(directory: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def _idx_dir_complete(directory: Path) -> bool:
    return all(_find_file(directory, stem) for stem in _IDX_FILES.values())


def _read_idx_dataset(directory: Path) -> RawData:
    arrays = {key: read_idx(_find_file(directory, stem)) for key, stem in _IDX_FILES.items()}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise ValueError(f"idx files in {directory} disagree: {split} images {x.shape} vs labels {y.shape}.")
    return RawData(
        x_train=arrays["x_train"][..., None],
        y_train=arrays["y_train"].astype(np.int64),
        x_test=arrays["x_test"][..., None],
        y_test=arrays["y_test"].astype(np.int64),
    )


def _unpickle(blob: bytes, where: str) -> dict:
    try:
        return pickle.loads(blob, encoding="bytes")
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise ValueError(f"data file {where} is corrupt or not a CIFAR python pickle ({e}).") from None


def _cifar_arrays(batch: dict, label_key: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    if b"data" not in batch or label_key not in batch:
        raise ValueError(f"data file {where} lacks the keys 'data' and {label_key.decode()!r} of a CIFAR pickle.")
    x = np.asarray(batch[b"data"], np.uint8)
    if x.ndim != 2 or x.shape[1] != 3072:
        raise ValueError(f"data file {where} holds images of shape {x.shape}: (N, 3072) is required.")
    x = x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return x, np.asarray(batch[label_key], np.int64)


def _read_cifar(location: Path, members: Mapping[str, Sequence[str]], label_key: bytes) -> RawData:
    """Reads CIFAR pickles from an extracted folder or a ``.tar.gz`` archive."""
    blobs: dict[str, bytes] = {}
    wanted = [m for names in members.values() for m in names]
    if location.is_dir():
        for m in wanted:
            blobs[m] = _open_maybe_gzip(location / m)
    else:
        try:
            with tarfile.open(location, "r:gz") as tar:
                for info in tar.getmembers():
                    base = info.name.split("/", 1)[-1]
                    if base in wanted:
                        blobs[base] = tar.extractfile(info).read()
        except (OSError, EOFError, tarfile.TarError) as e:
            raise ValueError(f"data file {location} is corrupt or not a tar.gz archive ({e}).") from None
        missing = [m for m in wanted if m not in blobs]
        if missing:
            raise ValueError(f"data file {location} lacks the members {missing}.")
    out = {}
    for split, names in members.items():
        parts = [_cifar_arrays(_unpickle(blobs[m], f"{location}/{m}"), label_key, f"{location}/{m}") for m in names]
        out[f"x_{split}"] = np.concatenate([p[0] for p in parts])
        out[f"y_{split}"] = np.concatenate([p[1] for p in parts])
    return RawData(**out)


# --------------------------------------------------------------------------
# Dataset specifications.


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """How to find, split and normalize one dataset.

    Attributes:
      name: our name for it (the runner's ``--dataset``).
      num_classes: K.
      input_shape: (H, W, C).
      train_size: examples in the official training set.
      num_validation: validation examples split off the official training set.
      tfds_name: the tensorflow-datasets name.
      mean, std: per-channel input normalization on the [0, 1] scale.
      augment: random crop (pad 4) + horizontal flip on training batches.
      local: candidate locations under the data directory, each
        ``(relative path, reader)``; the first one that exists is read.
    """

    name: str
    num_classes: int
    input_shape: tuple[int, ...]
    train_size: int
    num_validation: int
    tfds_name: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool
    local: tuple[tuple[str, Callable[[Path], RawData], Callable[[Path], bool]], ...]

    def find_local(self, data_dir: Path) -> tuple[Path, Callable[[Path], RawData]] | None:
        for rel, reader, exists in self.local:
            path = data_dir / rel if rel else data_dir
            if exists(path):
                return path, reader
        return None

    def local_candidates(self, data_dir: Path) -> list[str]:
        return [str(data_dir / rel if rel else data_dir) for rel, _, _ in self.local]


_CIFAR10_MEMBERS = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
_CIFAR100_MEMBERS = {"train": ["train"], "test": ["test"]}


def _cifar10(path: Path) -> RawData:
    return _read_cifar(path, _CIFAR10_MEMBERS, b"labels")


def _cifar100(path: Path) -> RawData:
    return _read_cifar(path, _CIFAR100_MEMBERS, b"fine_labels")


def _cifar_dir_exists(members):
    return lambda p: p.is_dir() and all((p / m).is_file() for names in members.values() for m in names)


def _cifar_local(name: str, folder: str, reader, members):
    """``<name>/<folder>``, ``<folder>``, then the same as ``<folder>.tar.gz``
    (``cifar-10-batches-py`` unpacks from ``cifar-10-python.tar.gz``)."""
    archive = folder.replace("-batches-py", "-python") + ".tar.gz"
    in_dir = _cifar_dir_exists(members)
    return (
        (f"{name}/{folder}", reader, in_dir),
        (folder, reader, in_dir),
        (f"{name}/{archive}", reader, Path.is_file),
        (archive, reader, Path.is_file),
    )


def _idx_local(*dirs: str):
    return tuple((d, _read_idx_dataset, _idx_dir_complete) for d in dirs)


# The MNIST normalization is the reference code's (x - 0.456) / 0.224.
DATASETS: Mapping[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        "mnist", 10, (28, 28, 1), 60_000, 12_000, "mnist", (0.456,), (0.224,), False, _idx_local("mnist", "")
    ),
    "fashion_mnist": DatasetSpec(
        "fashion_mnist",
        10,
        (28, 28, 1),
        60_000,
        12_000,
        "fashion_mnist",
        (0.2860,),
        (0.3530,),
        False,
        _idx_local("fashion_mnist", "fashion-mnist"),
    ),
    "cifar10": DatasetSpec(
        "cifar10",
        10,
        (32, 32, 3),
        50_000,
        10_000,
        "cifar10",
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
        True,
        _cifar_local("cifar10", "cifar-10-batches-py", _cifar10, _CIFAR10_MEMBERS),
    ),
    "cifar100": DatasetSpec(
        "cifar100",
        100,
        (32, 32, 3),
        50_000,
        10_000,
        "cifar100",
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
        True,
        _cifar_local("cifar100", "cifar-100-python", _cifar100, _CIFAR100_MEMBERS),
    ),
}


def get_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ValueError(
            f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)} (or from_arrays for your own data)."
        )
    return DATASETS[name]


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    """The data directory: the argument, else ``$LIMIT_DATA_DIR``, else None."""
    value = data_dir if data_dir else os.environ.get(DATA_DIR_ENV)
    return Path(value).expanduser() if value else None


# --------------------------------------------------------------------------
# tensorflow-datasets.


def _tfds_arrays(spec: DatasetSpec, tfds_dir: Path | None, *, download: bool, manual_dir: Path | None) -> RawData:
    import tensorflow_datasets as tfds

    kwargs = {}
    if manual_dir is not None:
        kwargs["download_and_prepare_kwargs"] = {
            "download_config": tfds.download.DownloadConfig(manual_dir=str(manual_dir))
        }
    splits = tfds.load(
        spec.tfds_name,
        split=["train", "test"],
        data_dir=None if tfds_dir is None else str(tfds_dir),
        as_supervised=True,
        download=download,
        **kwargs,
    )
    # Batched reads, not batch_size=-1: the latter reserves memory for the
    # registered split size and aborts under tfds.testing.mock_data.
    arrays = []
    for split in splits:
        xs, ys = [], []
        for x, y in tfds.as_numpy(split.batch(8192)):
            xs.append(x)
            ys.append(y)
        arrays.append((np.concatenate(xs).astype(np.uint8), np.concatenate(ys).astype(np.int64)))
    (x_tr, y_tr), (x_te, y_te) = arrays
    return RawData(x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)


def _tfds_prepared(spec: DatasetSpec, tfds_dir: Path | None) -> bool:
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(spec.tfds_name, data_dir=None if tfds_dir is None else str(tfds_dir))
    except Exception:  # noqa: BLE001 - an unregistered or broken builder means "not prepared"
        return False
    return builder.is_prepared()


def load_raw(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    source: str = "auto",
    allow_download: bool = False,
) -> RawData:
    """Loads a dataset's official train and test arrays.

    Args:
      name: one of :data:`DATASETS`.
      data_dir: directory holding the original files (``mnist/``,
        ``cifar10/`` ...) and tfds' prepared data (``tfds/``); defaults to
        ``$LIMIT_DATA_DIR``.
      source: ``"auto"`` (local files, then prepared tfds, then a tfds
        download if allowed), ``"local"`` or ``"tfds"``.
      allow_download: whether tfds may download. Off by default so that an
        offline machine fails at once instead of retrying for minutes.

    Raises:
      DataNotFoundError: not available offline and no download allowed.
      ValueError: unknown name or source, or a corrupt file.
    """
    spec = get_spec(name)
    if source not in SOURCES:
        raise ValueError(f"unknown data source {source!r}; allowed: {', '.join(SOURCES)}.")
    root = resolve_data_dir(data_dir)
    local = spec.find_local(root) if root is not None else None
    tfds_dir = root / "tfds" if root is not None else None

    if source in ("auto", "local") and local is not None:
        path, reader = local
        return reader(path)
    if source == "local":
        where = spec.local_candidates(root) if root is not None else [f"${DATA_DIR_ENV} (unset)"]
        raise DataNotFoundError(f"dataset {name!r} not found in local files; looked in: {', '.join(where)}.")
    manual_dir = local[0] if local is not None and local[0].is_dir() else None
    if _tfds_prepared(spec, tfds_dir):
        return _tfds_arrays(spec, tfds_dir, download=False, manual_dir=None)
    if source == "tfds" and manual_dir is not None:
        # tfds finds the original files in manual_dir and prepares offline.
        return _tfds_arrays(spec, tfds_dir, download=True, manual_dir=manual_dir)
    if allow_download:
        return _tfds_arrays(spec, tfds_dir, download=True, manual_dir=None)
    where = spec.local_candidates(root) + [str(tfds_dir)] if root is not None else [f"${DATA_DIR_ENV} (unset)"]
    raise DataNotFoundError(
        f"dataset {name!r} not found offline (looked in: {', '.join(where)}) and downloads are off; "
        f"set {DATA_DIR_ENV} or data_dir to a directory with the original files, or allow downloads."
    )


# --------------------------------------------------------------------------
# Noisy splits in the paper's protocol.


@dataclasses.dataclass(frozen=True)
class Split:
    """One split: inputs, observed and clean labels, and source indices.

    Attributes:
      x: inputs (uint8 images or float features), shape (N, ...).
      labels: observed labels (noisy for train, and for validation unless
        it is kept clean), int64 (N,).
      clean_labels: true labels, int64 (N,).
      source_indices: each example's index in the original array it came
        from (the official training or test set).
    """

    x: np.ndarray
    labels: np.ndarray
    clean_labels: np.ndarray
    source_indices: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def noise_mask(self) -> np.ndarray:
        """True where the observed label differs from the clean one."""
        return self.labels != self.clean_labels

    @property
    def noise_rate(self) -> float:
        return float(self.noise_mask.mean()) if len(self) else 0.0


@dataclasses.dataclass(frozen=True)
class NoisyDataset:
    """Train / validation / test splits with label noise, plus what a model needs to know."""

    name: str
    num_classes: int
    input_shape: tuple[int, ...]
    train: Split
    validation: Split
    test: Split
    transition_matrix: np.ndarray
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool = False

    @property
    def realized_noise_rate(self) -> float:
        """Fraction of corrupted labels in the training split."""
        return self.train.noise_rate


def _check_labels(y: np.ndarray, num_classes: int, what: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{what} have shape {y.shape}: a 1-D array of integer class ids is required.")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{what} span [{y.min()}, {y.max()}]: they must lie in [0, {num_classes}).")
    return y.astype(np.int64)


def make_noisy_splits(
    raw: RawData,
    *,
    name: str,
    num_classes: int,
    num_validation: int,
    matrix,
    num_train_examples: int | None = None,
    clean_validation: bool = False,
    seed: int = 0,
    mean: Sequence[float] = (0.0,),
    std: Sequence[float] = (1.0,),
    augment: bool = False,
) -> NoisyDataset:
    """Applies the paper's protocol to raw arrays (see the module docstring).

    Args:
      raw: official train and test arrays.
      name: dataset name recorded in the result.
      num_classes: K.
      num_validation: how many of the official training examples become validation.
      matrix: (K, K) transition matrix applied to train and validation labels.
      num_train_examples: size n of the training subset (all of the train part if None).
      clean_validation: keep validation labels clean.
      seed: fixes the split, the subset and the noise.
      mean, std: normalization recorded for the input pipeline.
      augment: whether training batches are augmented (images only).
    """
    t = noise_lib.validate_transition_matrix(matrix, num_classes)
    y_train = _check_labels(raw.y_train, num_classes, f"{name} training labels")
    y_test = _check_labels(raw.y_test, num_classes, f"{name} test labels")
    total = y_train.shape[0]
    if not 0 <= num_validation < total:
        raise ValueError(f"num_validation={num_validation} is not allowed: it must be in [0, {total}).")
    train_part = total - num_validation
    n = train_part if num_train_examples is None else int(num_train_examples)
    if not 1 <= n <= train_part:
        raise ValueError(
            f"num_train_examples={num_train_examples} is not allowed for {name}: it must be in [1, {train_part}] "
            f"(the training part after {num_validation} validation examples)."
        )
    split_seq, train_noise_seq, val_noise_seq = np.random.SeedSequence(seed).spawn(3)
    perm = np.random.default_rng(split_seq).permutation(total)
    train_idx, val_idx = perm[:train_part], perm[train_part:]
    # Corrupt the whole train part, then take the first n: nested subsets.
    train_noisy = noise_lib.corrupt(y_train[train_idx], t, np.random.default_rng(train_noise_seq)).labels[:n]
    train_idx = train_idx[:n]
    if clean_validation:
        val_noisy = y_train[val_idx]
    else:
        val_noisy = noise_lib.corrupt(y_train[val_idx], t, np.random.default_rng(val_noise_seq)).labels
    return NoisyDataset(
        name=name,
        num_classes=num_classes,
        input_shape=tuple(raw.x_train.shape[1:]),
        train=Split(raw.x_train[train_idx], train_noisy, y_train[train_idx], train_idx),
        validation=Split(raw.x_train[val_idx], val_noisy, y_train[val_idx], val_idx),
        test=Split(raw.x_test, y_test, y_test, np.arange(y_test.shape[0])),
        transition_matrix=t,
        mean=tuple(mean),
        std=tuple(std),
        augment=augment,
    )


def _resolve_matrix(noise: str, noise_rate: float, noise_matrix, num_classes: int, dataset: str) -> np.ndarray:
    if noise_matrix is not None:
        return noise_lib.validate_transition_matrix(noise_matrix, num_classes)
    return noise_lib.transition_matrix(noise, num_classes, noise_rate, dataset)


def load_noisy_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    num_train_examples: int | None = None,
    noise: str = "uniform",
    noise_rate: float = 0.0,
    noise_matrix=None,
    clean_validation: bool = False,
    seed: int = 0,
    source: str = "auto",
    allow_download: bool = False,
) -> NoisyDataset:
    """Loads a named dataset and corrupts its labels in the paper's protocol.

    Example::

        from limit_tf import data
        ds = data.load_noisy_dataset("mnist", data_dir="../shared/data",
                                     num_train_examples=1000, noise="uniform",
                                     noise_rate=0.8, seed=0)
        ds.realized_noise_rate            # ~0.8
        train = data.to_tf_dataset(ds, "train", batch_size=256, training=True)

    Args:
      name: ``mnist``, ``fashion_mnist``, ``cifar10`` or ``cifar100``.
      data_dir: where the original files are (defaults to ``$LIMIT_DATA_DIR``).
      num_train_examples: training subset size n (default: the whole train part).
      noise: a name from :data:`limit_tf.noise.NOISE_MODELS`.
      noise_rate: the noise rate in ``[0, 1)``.
      noise_matrix: a user transition matrix; overrides ``noise``/``noise_rate``.
      clean_validation: keep validation labels clean.
      seed: the data seed (split, subset and noise).
      source: ``auto``, ``local`` or ``tfds`` (see :func:`load_raw`).
      allow_download: let tfds download when nothing is found offline.
    """
    spec = get_spec(name)
    matrix = _resolve_matrix(noise, noise_rate, noise_matrix, spec.num_classes, name)
    limit = spec.train_size - spec.num_validation
    if num_train_examples is not None and not 1 <= int(num_train_examples) <= limit:
        raise ValueError(
            f"num_train_examples={num_train_examples} is not allowed for {name}: it must be in [1, {limit}]."
        )
    raw = load_raw(name, data_dir, source=source, allow_download=allow_download)
    # Smaller copies (tfds mock data, truncated files) keep the split's proportions.
    num_validation = spec.num_validation
    if len(raw.y_train) != spec.train_size:
        num_validation = max(1, round(len(raw.y_train) * spec.num_validation / spec.train_size))
    return make_noisy_splits(
        raw,
        name=name,
        num_classes=spec.num_classes,
        num_validation=num_validation,
        matrix=matrix,
        num_train_examples=num_train_examples,
        clean_validation=clean_validation,
        seed=seed,
        mean=spec.mean,
        std=spec.std,
        augment=spec.augment,
    )


def from_arrays(
    x,
    y,
    *,
    x_test=None,
    y_test=None,
    num_classes: int | None = None,
    validation_fraction: float = 0.2,
    test_fraction: float = 0.2,
    num_train_examples: int | None = None,
    noise: str = "uniform",
    noise_rate: float = 0.0,
    noise_matrix=None,
    clean_validation: bool = False,
    seed: int = 0,
    normalize: bool = False,
    name: str = "arrays",
) -> NoisyDataset:
    """Builds a :class:`NoisyDataset` from in-memory arrays (images or tabular).

    ``y`` holds the *clean* labels; noise is added as in
    :func:`load_noisy_dataset`. Without ``x_test``, a clean test set of
    ``test_fraction`` is held out first (with the data seed).

    Args:
      x: inputs, shape (N, ...). uint8 images or float features.
      y: clean integer labels, shape (N,).
      x_test, y_test: an explicit clean test set.
      num_classes: K (default: ``max(y) + 1``).
      validation_fraction: share of the non-test data used for validation.
      test_fraction: share held out as test when ``x_test`` is not given.
      normalize: standardize each feature with the training part's mean/std
        (otherwise the inputs are used as they are; uint8 images are always
        scaled to [0, 1]).
      Other args: as in :func:`load_noisy_dataset`.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} examples but y has {y.shape[0]}: they must match.")
    k = int(num_classes) if num_classes is not None else int(y.max()) + 1
    for frac, what in ((validation_fraction, "validation_fraction"), (test_fraction, "test_fraction")):
        if not 0.0 < frac < 1.0:
            raise ValueError(f"{what}={frac!r} is not allowed: it must be in (0, 1).")
    if (x_test is None) != (y_test is None):
        raise ValueError("x_test and y_test must be given together.")
    if x_test is None:
        perm = np.random.default_rng(np.random.SeedSequence(seed).spawn(4)[3]).permutation(x.shape[0])
        num_test = max(1, int(round(test_fraction * x.shape[0])))
        test_idx, rest = perm[:num_test], perm[num_test:]
        x_test, y_test, x, y = x[test_idx], y[test_idx], x[rest], y[rest]
    raw = RawData(x, y, np.asarray(x_test), np.asarray(y_test))
    matrix = _resolve_matrix(noise, noise_rate, noise_matrix, k, name)
    dataset = make_noisy_splits(
        raw,
        name=name,
        num_classes=k,
        num_validation=max(1, int(round(validation_fraction * y.shape[0]))),
        matrix=matrix,
        num_train_examples=num_train_examples,
        clean_validation=clean_validation,
        seed=seed,
        augment=False,
    )
    if not normalize:
        return dataset
    # Per-feature statistics of the training split only.
    flat = dataset.train.x.reshape(len(dataset.train), -1).astype(np.float64)
    flat = flat / 255.0 if dataset.train.x.dtype == np.uint8 else flat
    mean = tuple(flat.mean(axis=0).tolist())
    std = tuple(np.maximum(flat.std(axis=0), 1e-8).tolist())
    return dataclasses.replace(dataset, mean=mean, std=std)


# --------------------------------------------------------------------------
# tf.data pipelines.

SPLITS = ("train", "validation", "test")
PREFETCH = 2


def _finish_pipeline(ds):
    """Prefetches a fixed depth with tf.data autotuning off.

    With autotuning on, destroying a finished iterator waits for the autotune
    thread's sleep: seconds per epoch trained, added at the end of every
    ``fit`` (measured: 37 s after a 4-epoch LIMIT run on 10k MNIST examples).
    Fixed parallelism (the number of cores) and prefetching keep the input
    pipeline ahead of the model here (see benchmarks/).
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.prefetch(PREFETCH).with_options(options)


def _normalizer(dataset: NoisyDataset):
    import tensorflow as tf

    mean = np.asarray(dataset.mean, np.float32)
    std = np.asarray(dataset.std, np.float32)
    feature_shape = dataset.input_shape
    if mean.size not in (1, feature_shape[-1]):  # per-feature statistics (from_arrays(normalize=True))
        mean, std = mean.reshape(feature_shape), std.reshape(feature_shape)

    def normalize(x):
        x = tf.cast(x, tf.float32)
        if dataset.train.x.dtype == np.uint8:
            x = x / 255.0
        return (x - mean) / std

    return normalize


def _augment(image, seed_offset):
    """Random crop with 4-pixel zero padding, then a random horizontal flip."""
    import tensorflow as tf

    h, w, _ = image.shape
    padded = tf.pad(image, [[4, 4], [4, 4], [0, 0]])
    image = tf.image.random_crop(padded, tf.shape(image), seed=seed_offset)
    image = tf.image.random_flip_left_right(image, seed=seed_offset + 1)
    return tf.ensure_shape(image, (h, w, image.shape[-1]))


def to_tf_dataset(
    dataset: NoisyDataset,
    split: str,
    *,
    batch_size: int,
    training: bool = False,
    seed: int = 0,
    with_metadata: bool = False,
    labels: str = "observed",
):
    """A batched, normalized, prefetched ``tf.data.Dataset`` over one split.

    Args:
      dataset: the noisy dataset.
      split: ``train``, ``validation`` or ``test``.
      batch_size: the (global) batch size.
      training: shuffle each epoch (seeded) and augment if the dataset does.
      seed: shuffle / augmentation seed.
      with_metadata: yield dicts ``{"image", "label", "clean_label",
        "index"}`` (index = position in the split) instead of ``(image, label)``.
      labels: ``observed`` or ``clean``: which labels ``(image, label)`` pairs carry.

    Returns:
      A ``tf.data.Dataset``.
    """
    import tensorflow as tf

    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}.")
    if labels not in ("observed", "clean"):
        raise ValueError(f"labels={labels!r} is not allowed; use 'observed' or 'clean'.")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size={batch_size!r} is not allowed: it must be >= 1.")
    part: Split = getattr(dataset, split)
    ds = tf.data.Dataset.from_tensor_slices(
        {
            "image": part.x,
            "label": part.labels.astype(np.int32),
            "clean_label": part.clean_labels.astype(np.int32),
            "index": np.arange(len(part), dtype=np.int64),
        }
    )
    if training:
        ds = ds.shuffle(len(part), seed=seed, reshuffle_each_iteration=True)
        if dataset.augment:
            ds = ds.map(
                lambda e: {**e, "image": _augment(e["image"], seed)},
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True,
            )
    normalize = _normalizer(dataset)
    ds = ds.batch(int(batch_size))
    key = "label" if labels == "observed" else "clean_label"
    if with_metadata:
        ds = ds.map(lambda e: {**e, "image": normalize(e["image"])}, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda e: (normalize(e["image"]), e[key]), num_parallel_calls=tf.data.AUTOTUNE)
    return _finish_pipeline(ds)


# --------------------------------------------------------------------------
# Clothing1M (file based: 1M images do not fit in memory).

CLOTHING1M_CLASSES = 14
CLOTHING1M_MEAN = (0.6959, 0.6537, 0.6371)
CLOTHING1M_STD = (0.3113, 0.3192, 0.3214)
_CLOTHING1M_LISTS = {
    "train": ("noisy_train_key_list.txt", "noisy_label_kv.txt"),
    "validation": ("clean_val_key_list.txt", "clean_label_kv.txt"),
    "test": ("clean_test_key_list.txt", "clean_label_kv.txt"),
}


@dataclasses.dataclass(frozen=True)
class FileSplit:
    """A split of image files: absolute paths and their labels."""

    paths: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _read_kv(path: Path) -> dict[str, int]:
    if not path.is_file():
        raise DataNotFoundError(f"Clothing1M file {path} is missing.")
    table = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or int(parts[1]) >= CLOTHING1M_CLASSES:
            raise ValueError(f"{path}:{lineno}: expected '<image path> <label 0-13>', got {line!r}.")
        table[parts[0]] = int(parts[1])
    return table


def load_clothing1m(
    manual_dir: str | os.PathLike, *, num_train_examples: int | None = None, seed: int = 0
) -> dict[str, FileSplit]:
    """Reads Clothing1M's key lists from its manual directory.

    The directory holds ``images/...`` and the usual annotation files
    (directly or under ``annotations/``): ``noisy_train_key_list.txt``,
    ``clean_val_key_list.txt``, ``clean_test_key_list.txt``,
    ``noisy_label_kv.txt``, ``clean_label_kv.txt``. The training labels are
    the noisy ones; validation and test use the clean labels. Its noise is
    real, so there is no clean label or corruption mask for training.

    Args:
      manual_dir: the Clothing1M directory.
      num_train_examples: a seeded random subset of the noisy training list.
      seed: seed for that subset.

    Returns:
      ``{"train", "validation", "test"}`` -> :class:`FileSplit`.
    """
    root = Path(manual_dir)
    if not root.is_dir():
        raise DataNotFoundError(f"Clothing1M directory {root} does not exist.")
    ann = root / "annotations" if (root / "annotations").is_dir() else root
    tables = {name: _read_kv(ann / name) for name in ("noisy_label_kv.txt", "clean_label_kv.txt")}
    out = {}
    for split, (key_file, kv_file) in _CLOTHING1M_LISTS.items():
        keys_path = ann / key_file
        if not keys_path.is_file():
            raise DataNotFoundError(f"Clothing1M file {keys_path} is missing.")
        keys = [k for k in keys_path.read_text().split() if k]
        missing = [k for k in keys if k not in tables[kv_file]]
        if missing:
            raise ValueError(f"{keys_path}: {len(missing)} keys have no label in {kv_file}, e.g. {missing[0]!r}.")
        paths = np.array([str(root / k) for k in keys])
        labels = np.array([tables[kv_file][k] for k in keys], np.int64)
        if split == "train" and num_train_examples is not None:
            if not 1 <= num_train_examples <= len(keys):
                raise ValueError(
                    f"num_train_examples={num_train_examples} is not allowed: it must be in [1, {len(keys)}]."
                )
            pick = np.random.default_rng(seed).permutation(len(keys))[:num_train_examples]
            paths, labels = paths[pick], labels[pick]
        out[split] = FileSplit(paths, labels)
    return out


def clothing1m_tf_dataset(split: FileSplit, *, batch_size: int, training: bool, image_size: int = 224, seed: int = 0):
    """Decodes, resizes (256), crops (random+flip for training, center otherwise) and normalizes."""
    import tensorflow as tf

    mean = np.asarray(CLOTHING1M_MEAN, np.float32)
    std = np.asarray(CLOTHING1M_STD, np.float32)

    def load(path, label):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        image = tf.image.resize(tf.cast(image, tf.float32) / 255.0, (256, 256))
        if training:
            image = tf.image.random_crop(image, (image_size, image_size, 3), seed=seed)
            image = tf.image.random_flip_left_right(image, seed=seed + 1)
        else:
            offset = (256 - image_size) // 2
            image = image[offset : offset + image_size, offset : offset + image_size]
        return (image - mean) / std, tf.cast(label, tf.int32)

    ds = tf.data.Dataset.from_tensor_slices((split.paths, split.labels))
    if training:
        ds = ds.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return _finish_pipeline(ds.batch(int(batch_size)))


def training_stream(dataset: NoisyDataset, *, batch_size: int, seed: int, first_epoch: int, last_epoch: int):
    """Training epochs ``first_epoch .. last_epoch - 1`` as one ``tf.data`` stream.

    Epoch ``e``'s order (and, for augmented datasets, its crops and flips)
    depends only on ``(seed, e)``, not on how many epochs this process has
    already run: a run resumed at epoch ``e`` sees exactly the batches an
    uninterrupted run would. Use with ``fit(steps_per_epoch=...)``.

    Returns:
      ``(dataset of (image, observed label) batches, steps per epoch)``.
    """
    import tensorflow as tf

    n = len(dataset.train)
    steps = -(-n // int(batch_size))
    x = tf.constant(dataset.train.x)
    y = tf.constant(dataset.train.labels.astype(np.int32))
    normalize = _normalizer(dataset)
    seed = int(seed)

    def one_epoch(epoch):
        epoch_seed = tf.stack([tf.constant(seed, tf.int64), epoch])
        order = tf.argsort(tf.random.stateless_uniform([n], seed=epoch_seed))
        ds = tf.data.Dataset.from_tensor_slices(order)
        if dataset.augment:

            def augment(i):
                s = tf.stack([epoch * 1_000_003 + tf.cast(i, tf.int64), tf.constant(seed, tf.int64)])
                image = x[i]
                padded = tf.pad(image, [[4, 4], [4, 4], [0, 0]])
                image = tf.image.stateless_random_crop(padded, tf.shape(image), seed=s)
                return tf.image.stateless_random_flip_left_right(image, seed=s + 1), y[i]

            return ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(int(batch_size))
        return ds.batch(int(batch_size)).map(lambda idx: (tf.gather(x, idx), tf.gather(y, idx)))

    stream = tf.data.Dataset.range(int(first_epoch), int(last_epoch)).flat_map(one_epoch)
    stream = stream.map(lambda images, labels: (normalize(images), labels), num_parallel_calls=tf.data.AUTOTUNE)
    return _finish_pipeline(stream), steps
