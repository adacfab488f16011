"""Your own data: an image folder, a CSV table, an ``.npz`` file, or any tensorflow-datasets dataset.

``--dataset`` names them with a prefix:

- ``folder:PATH``: one subfolder per class, as for
  ``keras.utils.image_dataset_from_directory``; class names are the folder
  names (sorted). Images keep their size when all share one (otherwise
  ``--image_size``); grayscale stays one channel (any colour image makes
  all of them RGB). Each example remembers its file (``origin``).
- ``csv:PATH``: a header row; the ``--label_column`` holds the labels
  (names or integers; class names are its sorted distinct values), every
  other column is a numeric feature. Each example remembers its row (1 is
  the first data row).
- ``npz:PATH``: arrays ``x`` and ``y`` (integer labels), optionally
  ``class_names``.
- ``tfds:NAME``: a tensorflow-datasets image-classification dataset
  (features ``image`` and ``label``), prepared under ``<data_dir>/tfds``;
  downloaded only with ``allow_download``. Its ``test`` split, if any, is
  the clean test set.

The labels are taken as given: they are the "observed" labels, and nothing
is known of the true ones (unless noise is injected on top with
``--noise``/``--noise_rate``, in which case the given labels play the clean
ones). Every problem with the input is a :class:`UserDataError` whose
message names the file, row or value at fault. Nothing here imports
TensorFlow except the ``tfds:`` reader.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from pathlib import Path

import numpy as np

from limit_tf.data.formats import RawData

KINDS = ("folder", "csv", "npz", "tfds")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class UserDataError(ValueError):
    """The user's data cannot be used as it is; the message names what and where."""


@dataclasses.dataclass(frozen=True)
class UserData:
    """Arrays read from the user's files.

    Attributes:
      x, y: inputs (uint8 images or float32 features) and integer labels.
      class_names: a name per label.
      origins: per example, its file path (images) or row number (tables).
    """

    x: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]
    origins: np.ndarray

    @property
    def is_image(self) -> bool:
        return self.x.ndim == 4


def parse(dataset: str) -> tuple[str, str] | None:
    """``"folder:runs/x"`` -> ``("folder", "runs/x")``; None for a named benchmark dataset."""
    kind, sep, rest = dataset.partition(":")
    if not sep or kind not in KINDS:
        return None
    return kind, rest


def problem(dataset: str) -> str | None:
    """Why ``dataset`` (a ``kind:PATH`` value) cannot be read, checked cheaply before anything runs."""
    kind, target = parse(dataset)
    if not target:
        return f"give a {'name' if kind == 'tfds' else 'path'} after '{kind}:'"
    if kind == "tfds":
        return None
    path = Path(target).expanduser()
    if not path.exists():
        return f"{path} does not exist"
    if kind == "folder" and not path.is_dir():
        return f"{path} is not a directory (one subfolder per class is expected)"
    if kind in ("csv", "npz") and not path.is_file():
        return f"{path} is not a file"
    return None


def is_tabular(dataset: str) -> bool:
    """Whether a user dataset holds feature vectors (CSV, or an npz file whose x is 2-D)."""
    kind, target = parse(dataset)
    if kind == "csv":
        return True
    if kind == "npz":
        try:
            with np.load(Path(target).expanduser(), allow_pickle=False) as arrays:
                return "x" in arrays and arrays["x"].ndim == 2
        except (OSError, ValueError):
            return False
    return False


# --------------------------------------------------------------------------
# Image folders.


def _open_image(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise UserDataError(f"{path} is not a readable image ({type(e).__name__}: {e}).") from None


def load_folder(path: str | os.PathLike, *, image_size: int | None = None) -> UserData:
    """Reads an image folder with one subfolder per class.

    Raises:
      UserDataError: a missing or empty folder, fewer than two classes, an
        empty class folder, a file that is not an image, or images of
        several sizes without ``image_size``.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise UserDataError(f"{root} is not a directory (one subfolder per class is expected).")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise UserDataError(
            f"{root} has {len(classes)} class folder{'s' if len(classes) != 1 else ''} "
            f"({', '.join(classes) or 'none'}); at least two are needed."
        )
    files, labels = [], []
    for label, name in enumerate(classes):
        members = sorted(f for f in (root / name).rglob("*") if f.is_file() and not f.name.startswith("."))
        if not members:
            raise UserDataError(f"class folder {root / name} is empty.")
        files += members
        labels += [label] * len(members)
    images = [_open_image(f) for f in files]
    color = any(image.mode not in ("L", "1", "I;16", "I", "F", "LA") for image in images)
    sizes = {image.size for image in images}
    if len(sizes) > 1 and image_size is None:
        (w1, h1), (w2, h2) = sorted(sizes)[:2]
        first = next(f for f, im in zip(files, images, strict=True) if im.size == (w1, h1))
        second = next(f for f, im in zip(files, images, strict=True) if im.size == (w2, h2))
        raise UserDataError(
            f"the images have {len(sizes)} sizes (e.g. {first} is {w1}x{h1}, {second} is {w2}x{h2}); "
            "give --image_size to resize them all to one."
        )
    arrays = []
    for image in images:
        image = image.convert("RGB" if color else "L")
        if image_size is not None and image.size != (image_size, image_size):
            image = image.resize((image_size, image_size))
        array = np.asarray(image, np.uint8)
        arrays.append(array if color else array[..., None])
    origins = np.asarray([str(f.relative_to(root)) for f in files])
    return UserData(np.stack(arrays), np.asarray(labels, np.int64), tuple(classes), origins)


# --------------------------------------------------------------------------
# Tables.


def load_csv(path: str | os.PathLike, *, label_column: str = "label") -> UserData:
    """Reads a CSV table: numeric feature columns and one label column.

    Raises:
      UserDataError: no such label column, a non-numeric or missing feature
        value (its row and column named), a label column with one value.
    """
    path = Path(path).expanduser()
    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            rows = [row for row in reader if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserDataError(f"{path} is not a readable CSV file ({e}).") from None
    if not header:
        raise UserDataError(f"{path} is empty: a header row and data rows are expected.")
    header = [h.strip() for h in header]
    if label_column not in header:
        raise UserDataError(
            f"{path} has no label column {label_column!r} (columns: {', '.join(header)}); name it with --label_column."
        )
    if not rows:
        raise UserDataError(f"{path} has a header but no data rows.")
    target = header.index(label_column)
    features = [i for i in range(len(header)) if i != target]
    if not features:
        raise UserDataError(f"{path} has no feature column besides {label_column!r}.")
    x = np.empty((len(rows), len(features)), np.float32)
    raw_labels = []
    for r, row in enumerate(rows, start=1):
        if len(row) != len(header):
            raise UserDataError(f"{path} row {r} has {len(row)} values; the header has {len(header)}.")
        raw_labels.append(row[target].strip())
        for j, i in enumerate(features):
            try:
                value = float(row[i])
            except ValueError:
                raise UserDataError(
                    f"{path} row {r}, column {header[i]!r}: {row[i]!r} is not a number "
                    "(feature columns must be numeric)."
                ) from None
            if not math.isfinite(value):
                raise UserDataError(f"{path} row {r}, column {header[i]!r}: {row[i]!r} is missing or not finite.")
            x[r - 1, j] = value
    if any(not label for label in raw_labels):
        first = next(r for r, label in enumerate(raw_labels, start=1) if not label)
        raise UserDataError(f"{path} row {first}: the label ({label_column!r}) is empty.")
    names = sorted(set(raw_labels), key=_label_order)
    if len(names) < 2:
        raise UserDataError(
            f"{path}: the label column {label_column!r} has one value ({names[0]!r}); two classes at least."
        )
    index = {name: k for k, name in enumerate(names)}
    y = np.asarray([index[label] for label in raw_labels], np.int64)
    return UserData(x, y, tuple(names), np.arange(1, len(rows) + 1))


def _label_order(label: str):
    """Integers in numeric order (2 before 10), then names alphabetically."""
    try:
        return (0, int(label), "")
    except ValueError:
        return (1, 0, label)


def load_npz(path: str | os.PathLike) -> UserData:
    """Reads arrays ``x`` and ``y`` (and optionally ``class_names``) from an ``.npz`` file."""
    path = Path(path).expanduser()
    try:
        with np.load(path, allow_pickle=False) as arrays:
            missing = [k for k in ("x", "y") if k not in arrays]
            if missing:
                raise UserDataError(f"{path} lacks the array{'s' if len(missing) > 1 else ''} {', '.join(missing)}.")
            x, y = arrays["x"], arrays["y"]
            names = tuple(str(n) for n in arrays["class_names"]) if "class_names" in arrays else ()
    except (OSError, ValueError) as e:
        if isinstance(e, UserDataError):
            raise
        raise UserDataError(f"{path} is not a readable .npz file ({e}).") from None
    k = len(names) or (int(np.max(y)) + 1 if y.size else 0)
    return UserData(x, y, names or tuple(str(i) for i in range(k)), np.arange(len(y)))


# --------------------------------------------------------------------------
# tensorflow-datasets.


def load_tfds(
    name: str, data_dir: str | os.PathLike | None, *, allow_download: bool
) -> tuple[UserData, UserData | None]:
    """A tfds image-classification dataset: (train, test or None)."""
    import tensorflow_datasets as tfds

    tfds_dir = None if data_dir is None else str(Path(data_dir) / "tfds")
    try:
        builder = tfds.builder(name, data_dir=tfds_dir)
    except Exception as e:  # noqa: BLE001 - tfds raises many kinds for an unknown name
        raise UserDataError(f"tfds:{name} is not a tensorflow-datasets dataset ({str(e).splitlines()[0]}).") from None
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise UserDataError(
            f"tfds:{name} has no 'image' and 'label' features: it is not an image-classification dataset."
        )
    if not builder.is_prepared():
        if not allow_download:
            raise UserDataError(
                f"tfds:{name} is not prepared under {tfds_dir or '~/tensorflow_datasets'} and downloads are off; "
                "prepare it there, or pass --allow_download."
            )
        builder.download_and_prepare()
    names = tuple(features["label"].names)

    def read(split: str) -> UserData:
        xs, ys = [], []
        for batch in tfds.as_numpy(builder.as_dataset(split=split, batch_size=4096)):
            xs.append(batch["image"])
            ys.append(batch["label"])
        x, y = np.concatenate(xs).astype(np.uint8), np.concatenate(ys).astype(np.int64)
        return UserData(x, y, names, np.asarray([f"{split}[{i}]" for i in range(len(y))]))

    splits = builder.info.splits
    if len(splits):
        return read("train"), (read("test") if "test" in splits else None)
    # No split metadata (tfds's mock data, for one): ask for the test split.
    try:
        test = read("test")
    except (ValueError, KeyError):
        test = None
    return read("train"), test


def load(dataset: str, *, data_dir=None, image_size=None, label_column="label", allow_download=False) -> UserData:
    """Reads ``kind:PATH`` (or the train split of ``tfds:NAME``)."""
    kind, target = parse(dataset)
    if kind == "folder":
        return load_folder(target, image_size=image_size)
    if kind == "csv":
        return load_csv(target, label_column=label_column)
    if kind == "npz":
        return load_npz(target)
    return load_tfds(target, data_dir, allow_download=allow_download)[0]


def as_raw(train: UserData, test: UserData | None) -> RawData:
    """Arrays for the split protocol; without a test set, an empty one."""
    if test is None:
        test = UserData(train.x[:0], train.y[:0], train.class_names, train.origins[:0])
    return RawData(train.x, train.y, test.x, test.y)
