"""Your own data: an image folder, a CSV table, an ``.npz`` file, or any tensorflow-datasets dataset.

``--dataset`` names them with a prefix:

- ``folder:PATH``: one subfolder per class, as for
  ``keras.utils.image_dataset_from_directory``; class names are the folder
  names (sorted). Images keep their size when all share one (otherwise
  ``--image_size``); grayscale stays one channel (any colour image makes
  all of them RGB). Each example remembers its file (``origin``). The
  images stay in their files (:class:`~limit_tf.data.files.ImageFiles`):
  every file is checked and measured once here, and training reads them
  batch by batch, so a folder need not fit in memory.
- ``csv:PATH``: a header row; the ``--label_column`` holds the labels
  (names or integers; class names are its sorted distinct values), every
  other column is a numeric feature; numeric labels that are equal are one
  class ("1", "1.0"). Each example remembers its line in the file (the
  header is line 1).
- ``npz:PATH``: arrays ``x`` and ``y`` (integer labels or class-name
  strings), optionally ``class_names``; (N, H, W) images get a channel axis.
  Pickles are never loaded. Each example remembers its index in ``x``.
- ``tfds:NAME``: a tensorflow-datasets image-classification dataset
  (features ``image`` and ``label``), prepared under ``<data_dir>/tfds``;
  downloaded only with ``allow_download``. Its ``test`` split, if any, is
  the clean test set.

The labels are taken as given: they are the "observed" labels, and nothing
is known of the true ones (unless noise is injected on top with
``--noise``/``--noise_rate``, in which case the given labels play the clean
ones). Every problem with the input is a :class:`UserDataError` whose
message names the file, row or value at fault. TensorFlow is imported
only to decode image files and for the ``tfds:`` reader.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from pathlib import Path

import numpy as np

from limit_tf.data import files as files_lib
from limit_tf.data.formats import RawData, UserDataError

KINDS = ("folder", "csv", "npz", "tfds")
FLOAT32_MAX = float(np.finfo(np.float32).max)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclasses.dataclass(frozen=True)
class UserData:
    """What was read from the user's files.

    Attributes:
      x, y: inputs (uint8 images, float32 features, or for a folder the
        :class:`~limit_tf.data.files.ImageFiles` that stand for its images) and integer labels.
      class_names: a name per label.
      origins: per example, its file path (folders), line in the file (CSV) or index in ``x`` (npz).
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
# Fingerprints: has the data changed since a run read it?


def _file_fingerprint(path: Path) -> dict:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"size": path.stat().st_size, "sha256": h.hexdigest()}


def fingerprint(dataset: str) -> dict | None:
    """What identifies the contents of ``kind:PATH``: for a folder every file's
    path (its class folder included), size and modification time; for a CSV or
    npz file its SHA-256. None for ``tfds:`` (tensorflow-datasets versions its data)."""
    kind, target = parse(dataset)
    path = Path(target).expanduser()
    if kind == "tfds" or not path.exists():
        return None
    if kind == "folder":
        files = {}
        for f in sorted(path.rglob("*")):
            rel = f.relative_to(path)
            if f.is_file() and not any(part.startswith(".") for part in rel.parts) and len(rel.parts) > 1:
                stat = f.stat()
                files[rel.as_posix()] = [stat.st_size, stat.st_mtime_ns]
        return {"kind": kind, "files": files}
    return {"kind": kind, **_file_fingerprint(path)}


def fingerprint_changes(old: dict, new: dict | None) -> str | None:
    """What changed between two :func:`fingerprint` values, in a phrase; None when nothing did."""
    if new is None or old == new:
        return None
    if old.get("kind") != "folder" or new.get("kind") != "folder":
        return "the file's contents changed"
    before, after = old["files"], new["files"]
    removed = sorted(set(before) - set(after))
    added = sorted(set(after) - set(before))
    moved = []
    by_name = {Path(a).name: a for a in added}
    for r in removed:
        if Path(r).name in by_name:
            moved.append(f"{r} -> {by_name[Path(r).name]}")
    moved_names = {Path(m.split(" -> ")[0]).name for m in moved}
    removed = [r for r in removed if Path(r).name not in moved_names]
    added = [a for a in added if Path(a).name not in moved_names]
    modified = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    parts = []
    for what, items in (
        ("moved to another class", moved),
        ("removed", removed),
        ("added", added),
        ("modified", modified),
    ):
        if items:
            parts.append(f"{len(items)} file{'s' if len(items) != 1 else ''} {what} (e.g. {items[0]})")
    return ", ".join(parts)


# --------------------------------------------------------------------------
# Image folders.


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
    images = files_lib.scan(root, files, image_size=image_size)
    return UserData(images, np.asarray(labels, np.int64), tuple(classes), images.paths)


# --------------------------------------------------------------------------
# Tables.


MISSING_LABELS = frozenset({"", "nan", "na", "n/a", "null", "?"})


def load_csv(path: str | os.PathLike, *, label_column: str = "label") -> UserData:
    """Reads a CSV table: numeric feature columns and one label column.

    Labels are names or numbers; numbers that are equal are one class ("1",
    "1.0" and "01" alike). Each example's origin is its line in the file
    (the header is line 1), as a text editor or spreadsheet numbers it.

    Raises:
      UserDataError: no such label column, a non-numeric, missing or
        out-of-float32-range feature value, a missing label ("", "NaN",
        "NA", ...), a label column with one value; the line and column named.
    """
    path = Path(path).expanduser()
    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            rows, lines = [], []
            for row in reader:
                if any(cell.strip() for cell in row):
                    rows.append(row)
                    lines.append(reader.line_num)
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
    for r, (row, line) in enumerate(zip(rows, lines, strict=True)):
        if len(row) != len(header):
            raise UserDataError(f"{path} line {line} has {len(row)} values; the header has {len(header)}.")
        raw_labels.append(_canonical_label(row[target].strip()))
        for j, i in enumerate(features):
            try:
                value = float(row[i])
            except ValueError:
                raise UserDataError(
                    f"{path} line {line}, column {header[i]!r}: {row[i]!r} is not a number "
                    "(feature columns must be numeric)."
                ) from None
            if not math.isfinite(value):
                raise UserDataError(f"{path} line {line}, column {header[i]!r}: {row[i]!r} is missing or not finite.")
            if abs(value) > FLOAT32_MAX:
                raise UserDataError(
                    f"{path} line {line}, column {header[i]!r}: {row[i]!r} is beyond float32's range "
                    f"(+-{FLOAT32_MAX:.3g}); rescale that column."
                )
            x[r, j] = value
    missing = [k for k, label in enumerate(raw_labels) if label.lower() in MISSING_LABELS]
    if missing:
        given = rows[missing[0]][target].strip()
        raise UserDataError(
            f"{path} line {lines[missing[0]]}: the label ({label_column!r}) is missing ({given!r}); "
            f"{len(missing)} row{'s' if len(missing) != 1 else ''} lack a label: fix or remove them."
        )
    names = sorted(set(raw_labels), key=_label_order)
    if len(names) < 2:
        raise UserDataError(
            f"{path}: the label column {label_column!r} has one value ({names[0]!r}); two classes at least."
        )
    index = {name: k for k, name in enumerate(names)}
    y = np.asarray([index[label] for label in raw_labels], np.int64)
    return UserData(x, y, tuple(names), np.asarray(lines))


def _canonical_label(text: str) -> str:
    """A label as a class name: integral numbers in one spelling ("1.0", "01" -> "1"); "NaN" stays as typed."""
    try:
        value = float(text)
    except ValueError:
        return text
    if math.isfinite(value) and value == int(value):
        return str(int(value))
    return text


def _label_order(label: str):
    """Integers in numeric order (2 before 10), then names alphabetically."""
    try:
        return (0, int(label), "")
    except ValueError:
        return (1, 0, label)


def load_npz(path: str | os.PathLike) -> UserData:
    """Reads arrays ``x`` and ``y`` (and optionally ``class_names``) from an ``.npz`` file.

    ``x``: one example per row, (N, features) for a table or (N, H, W[, C])
    for images (a missing channel axis is added). ``y``: N integer labels, or
    N strings (class names, sorted). Pickled (object) arrays are never loaded.

    Raises:
      UserDataError: the file is not an npz archive (a ``.npy`` file, say),
        holds pickles, lacks ``x`` or ``y``, or their shapes or types do not fit.
    """
    path = Path(path).expanduser()
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as e:
        raise UserDataError(f"{path} cannot be read ({e.strerror}).") from None
    if magic == b"\x93NUMPY":
        raise UserDataError(
            f"{path} is a .npy file (one array); npz: expects an .npz archive with arrays x and y "
            "(numpy.savez(path, x=x, y=y))."
        )
    if not magic.startswith(b"PK"):
        raise UserDataError(f"{path} is not an .npz file (a zip archive of arrays x and y, as numpy.savez writes).")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            missing = [k for k in ("x", "y") if k not in arrays]
            if missing:
                raise UserDataError(
                    f"{path} lacks the array{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                    f"(it holds: {', '.join(arrays.files) or 'nothing'})."
                )
            x, y = arrays["x"], arrays["y"]
            names = arrays.get("class_names")
    except UserDataError:
        raise
    except ValueError as e:
        if "pickle" in str(e):
            raise UserDataError(
                f"{path} holds object (pickled) arrays, and limit-tf never loads pickles: save x as numbers and "
                "y as integers or strings."
            ) from None
        raise UserDataError(f"{path} is not a readable .npz file ({e}).") from None
    except (OSError, EOFError) as e:
        raise UserDataError(f"{path} is not a readable .npz file ({e}).") from None
    x = _npz_inputs(x, path)
    if y.ndim != 1:
        raise UserDataError(f"{path}: y has shape {y.shape}; one label per example is needed, shape (N,).")
    if len(y) != len(x):
        raise UserDataError(f"{path}: x has {len(x)} examples and y {len(y)} labels; they must be equal.")
    if y.dtype.kind in "US":
        labels = [str(v) for v in y]
        class_names = tuple(sorted(set(labels), key=_label_order))
        index = {name: k for k, name in enumerate(class_names)}
        y = np.asarray([index[v] for v in labels], np.int64)
    elif y.dtype.kind in "iub" or (y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y))):
        y = y.astype(np.int64)
        if y.size and y.min() < 0:
            raise UserDataError(f"{path}: y holds {int(y.min())}; labels must be integers >= 0 (or class names).")
        if names is not None:
            class_names = tuple(str(n) for n in names.reshape(-1))
            if y.size and y.max() >= len(class_names):
                raise UserDataError(
                    f"{path}: y holds {int(y.max())} but class_names has {len(class_names)} names; "
                    f"labels must lie in [0, {len(class_names)})."
                )
        else:
            class_names = tuple(str(i) for i in range(int(y.max()) + 1 if y.size else 0))
    else:
        raise UserDataError(
            f"{path}: y has dtype {y.dtype}; labels must be integers (0, 1, ...) or strings (class names)."
        )
    return UserData(x, y, class_names, np.arange(len(y)))


def _npz_inputs(x: np.ndarray, path: Path) -> np.ndarray:
    """``x`` checked for what training needs; (N, H, W) images get their channel axis."""
    if x.ndim < 2:
        raise UserDataError(
            f"{path}: x has shape {x.shape}; one example per row is needed: (N, features) for a table, "
            "(N, height, width[, channels]) for images."
        )
    if x.ndim > 4:
        raise UserDataError(f"{path}: x has shape {x.shape}; at most (N, height, width, channels) is allowed.")
    if x.dtype.kind == "c":
        raise UserDataError(
            f"{path}: x is complex ({x.dtype}); give real numbers (e.g. split real and imaginary parts)."
        )
    if x.dtype.kind not in "iufb":
        raise UserDataError(f"{path}: x has dtype {x.dtype}; numbers are needed.")
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x) | (np.abs(np.nan_to_num(x)) > FLOAT32_MAX)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise UserDataError(
                f"{path}: x[{', '.join(map(str, where))}] is {x[where]!r}: inputs must be finite float32 values."
            )
    elif x.dtype.kind in "iu" and x.dtype != np.uint8 and x.size and np.abs(x).max() > FLOAT32_MAX:
        raise UserDataError(f"{path}: x holds values beyond float32's range.")
    if x.ndim == 3:
        x = x[..., None]  # (N, H, W): grayscale images
    return x


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
