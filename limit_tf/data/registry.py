"""The named datasets, and where their raw arrays come from.

Sources, in the order they are tried (``source="auto"``):

1. **Local files** in their original distribution formats under a data
   directory (the ``data_dir`` argument, else ``$LIMIT_DATA_DIR``):
   MNIST / Fashion-MNIST idx ``.gz`` files, CIFAR-10/100 python pickles
   (extracted folder or the ``.tar.gz``), checked against their published
   checksums. Read directly with numpy: seconds.
2. **tensorflow-datasets**, already prepared under ``<data_dir>/tfds``.
3. **tensorflow-datasets download**, only when ``allow_download=True``.
   Nothing ever waits on tfds' network retries: whether a download may
   happen is decided before tfds is called.

``source="tfds"`` forces the tfds path; tfds then prepares the dataset offline
from the same local files (its ``manual_dir``), since they match its
checksums (for CIFAR tfds wants the *binary* tarballs). Importing this module
imports neither TensorFlow nor tfds.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from limit_tf.data import formats

DATA_DIR_ENV = "LIMIT_DATA_DIR"
SOURCES = ("auto", "local", "tfds")


class DataNotFoundError(FileNotFoundError):
    """The requested dataset is not available offline and no download is allowed."""


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """How to find, split and normalize one dataset.

    Attributes:
      name: our name for it (the runner's ``--dataset``).
      class_names: the classes' names, index = label.
      input_shape: (H, W, C).
      train_size: examples in the official training set.
      num_validation: validation examples split off the official training set.
      tfds_name: the tensorflow-datasets name.
      mean, std: per-channel input normalization on the [0, 1] scale.
      augment: random crop (pad 4) + horizontal flip on training batches.
      architecture: the paper's network for it (``--architecture`` default).
      local: candidate locations under the data directory, each
        ``(relative path, reader(path, verify), exists(path))``; the first
        that exists is read.
    """

    name: str
    class_names: tuple[str, ...]
    input_shape: tuple[int, ...]
    train_size: int
    num_validation: int
    tfds_name: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool
    architecture: str
    local: tuple[tuple[str, Callable[..., formats.RawData], Callable[[Path], bool]], ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def find_local(self, data_dir: Path) -> tuple[Path, Callable[..., formats.RawData]] | None:
        for rel, reader, exists in self.local:
            path = data_dir / rel if rel else data_dir
            if exists(path):
                return path, reader
        return None

    def local_candidates(self, data_dir: Path) -> list[str]:
        return [str(data_dir / rel if rel else data_dir) for rel, _, _ in self.local]


def _idx_local(name: str, *dirs: str):
    def reader(path: Path, verify: bool = True) -> formats.RawData:
        return formats.read_idx_dataset(path, name, verify=verify)

    return tuple((d, reader, formats.idx_dir_complete) for d in dirs)


def _cifar_local(name: str, folder: str, members, label_key: bytes):
    """``<name>/<folder>``, ``<folder>``, then the same as ``<folder>.tar.gz``
    (``cifar-10-batches-py`` unpacks from ``cifar-10-python.tar.gz``)."""

    def reader(path: Path, verify: bool = True) -> formats.RawData:
        return formats.read_cifar(path, members, label_key, name, verify=verify)

    archive = folder.replace("-batches-py", "-python") + ".tar.gz"
    in_dir = formats.cifar_dir_complete(members)
    return (
        (f"{name}/{folder}", reader, in_dir),
        (folder, reader, in_dir),
        (f"{name}/{archive}", reader, Path.is_file),
        (archive, reader, Path.is_file),
    )


_FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_CIFAR100_TEXT = """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can
    castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin
    elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster
    man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck
    pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk
    skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger
    tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm"""
_CIFAR100 = tuple(_CIFAR100_TEXT.split())

# The MNIST normalization is the reference code's (x - 0.456) / 0.224.
DATASETS: Mapping[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        class_names=tuple(str(d) for d in range(10)),
        input_shape=(28, 28, 1),
        train_size=60_000,
        num_validation=12_000,
        tfds_name="mnist",
        mean=(0.456,),
        std=(0.224,),
        augment=False,
        architecture="mnist_cnn",
        local=_idx_local("mnist", "mnist", ""),
    ),
    "fashion_mnist": DatasetSpec(
        name="fashion_mnist",
        class_names=_FASHION,
        input_shape=(28, 28, 1),
        train_size=60_000,
        num_validation=12_000,
        tfds_name="fashion_mnist",
        mean=(0.2860,),
        std=(0.3530,),
        augment=False,
        architecture="mnist_cnn",
        local=_idx_local("fashion_mnist", "fashion_mnist", "fashion-mnist"),
    ),
    "cifar10": DatasetSpec(
        name="cifar10",
        class_names=_CIFAR10,
        input_shape=(32, 32, 3),
        train_size=50_000,
        num_validation=10_000,
        tfds_name="cifar10",
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        augment=True,
        architecture="resnet34",
        local=_cifar_local("cifar10", "cifar-10-batches-py", formats.CIFAR10_MEMBERS, b"labels"),
    ),
    "cifar100": DatasetSpec(
        name="cifar100",
        class_names=_CIFAR100,
        input_shape=(32, 32, 3),
        train_size=50_000,
        num_validation=10_000,
        tfds_name="cifar100",
        mean=(0.5071, 0.4865, 0.4409),
        std=(0.2673, 0.2564, 0.2762),
        augment=True,
        architecture="resnet34",
        local=_cifar_local("cifar100", "cifar-100-python", formats.CIFAR100_MEMBERS, b"fine_labels"),
    ),
}


def get_spec(name: str) -> DatasetSpec:
    from limit_tf.data import cifar_n

    human = cifar_n.parse(name)
    if human is not None:  # CIFAR-N: human labels on CIFAR's images
        return DATASETS[cifar_n.BASE[human[0]]]
    if name not in DATASETS:
        raise ValueError(
            f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)} (or data.from_arrays for your own data)."
        )
    return DATASETS[name]


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    """The data directory: the argument, else ``$LIMIT_DATA_DIR``, else None."""
    value = data_dir if data_dir else os.environ.get(DATA_DIR_ENV)
    return Path(value).expanduser() if value else None


# --------------------------------------------------------------------------
# tensorflow-datasets.


def _tfds_arrays(spec: DatasetSpec, tfds_dir: Path | None, *, download: bool, manual_dir: Path | None):
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
    return formats.RawData(x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)


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
    verify: bool = True,
) -> formats.RawData:
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
      verify: check local files against their published checksums.

    Raises:
      DataNotFoundError: not available offline and no download allowed.
      DataFileError: a corrupt or altered file.
      ValueError: unknown name or source.
    """
    spec = get_spec(name)
    if source not in SOURCES:
        raise ValueError(f"unknown data source {source!r}; allowed: {', '.join(SOURCES)}.")
    root = resolve_data_dir(data_dir)
    local = spec.find_local(root) if root is not None else None
    tfds_dir = root / "tfds" if root is not None else None

    if source in ("auto", "local") and local is not None:
        path, reader = local
        return reader(path, verify=verify)
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
        f"set {DATA_DIR_ENV} or --data_dir to a directory with the original files, or pass --allow_download."
    )
