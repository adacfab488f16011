"""CIFAR-N's human labels (Wei et al., ICLR 2022), read without PyTorch and without running a pickle.

The release's label files, ``CIFAR-10_human.pt`` and ``CIFAR-100_human.pt``
(https://github.com/UCSC-REAL/cifar-10-100n), are what ``torch.save`` writes:
a zip archive whose ``<name>/data.pkl`` pickles a dict of numpy arrays, one
label per image of the training set in the order of the python-version
batches. :func:`read_label_file` opens it with an unpickler that builds
numeric numpy arrays and nothing else: any other object a pickle names
(a function, a class, a PyTorch tensor's storage) is refused with one line,
so a file from elsewhere cannot run code.

Label sets: ``cifar10n:worst`` (``worse_label``: the worst of three
annotators, about 40% wrong), ``aggre`` (majority vote, about 9%),
``random1`` .. ``random3`` (one annotator each, about 17%);
``cifar100n:noisy`` (about 40%). ``clean_label`` is the original label and
serves as the truth.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np

from limit_tf.data.formats import DataFileError

FILES = {"cifar10n": "CIFAR-10_human.pt", "cifar100n": "CIFAR-100_human.pt"}
LABEL_SETS = {
    "cifar10n": {
        "worst": "worse_label",
        "aggre": "aggre_label",
        "random1": "random_label1",
        "random2": "random_label2",
        "random3": "random_label3",
    },
    "cifar100n": {"noisy": "noisy_label"},
}
NUM_CLASSES = {"cifar10n": 10, "cifar100n": 100}
BASE = {"cifar10n": "cifar10", "cifar100n": "cifar100"}  # whose images the labels belong to
NUM_TRAIN = 50_000
CLEAN = "clean_label"

# What a pickle of numpy arrays names, and nothing more (protocol 2, which torch.save uses, spells bytes
# through _codecs.encode).
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
    ("collections", "OrderedDict"),
}


class _ArraysOnly(pickle.Unpickler):
    def __init__(self, file, source: str):
        super().__init__(file)
        self.source = source

    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise DataFileError(
                f"{self.source} names {module}.{name}: limit-tf reads numeric arrays only and runs no other pickled "
                "object (a CIFAR-N label file holds numpy arrays)."
            )
        return super().find_class(module, name)

    def persistent_load(self, pid):
        raise DataFileError(
            f"{self.source} holds PyTorch tensors: limit-tf reads numpy arrays only (the CIFAR-N release's files "
            "hold numpy arrays; convert tensors with .numpy() and save them again)."
        )


def parse(name: str) -> tuple[str, str] | None:
    """``("cifar10n", "worst")`` for ``"cifar10n:worst"``; None for any other dataset name."""
    base, sep, label_set = str(name).partition(":")
    return (base, label_set) if sep and base in LABEL_SETS else None


def problem(name: str) -> str | None:
    """Why ``name`` is not a CIFAR-N label set (one phrase), or None."""
    base, label_set = parse(name)
    if label_set not in LABEL_SETS[base]:
        return f"not a label set; allowed: {', '.join(f'{base}:{s}' for s in LABEL_SETS[base])}"
    return None


def read_label_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of a CIFAR-N label file (a ``torch.save`` zip archive of a dict of numpy arrays).

    Raises:
      DataFileError: it is not such an archive, or its pickle names anything
        but numeric numpy arrays (one line naming the file and what it holds).
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("data.pkl")]
            if len(names) != 1:
                raise DataFileError(f"{path} is a zip archive without one data.pkl: not a CIFAR-N label file.")
            payload = archive.read(names[0])
    except zipfile.BadZipFile:
        raise DataFileError(
            f"{path} is not a zip archive (what torch.save writes): not a CIFAR-N label file."
        ) from None
    except OSError as e:
        raise DataFileError(f"{path} cannot be read: {e.strerror or e}.") from None
    try:
        content = _ArraysOnly(io.BytesIO(payload), str(path)).load()
    except DataFileError:
        raise
    except Exception as e:  # noqa: BLE001 - a damaged pickle fails in many ways
        raise DataFileError(f"{path} is damaged: its pickle does not load ({type(e).__name__}).") from None
    if not isinstance(content, dict) or not all(isinstance(v, np.ndarray) for v in content.values()):
        raise DataFileError(f"{path} does not hold a dict of arrays: not a CIFAR-N label file.")
    return {str(k): v for k, v in content.items()}


def find_label_file(dataset: str, data_dir: str | os.PathLike) -> Path:
    """The label file of ``cifar10n`` / ``cifar100n``: at the top of ``data_dir`` or beside the CIFAR python batches.

    Raises:
      FileNotFoundError: it is in neither place (the message names both and where the release is).
    """
    name = FILES[dataset]
    root = Path(data_dir)
    batches = "cifar-10-batches-py" if dataset == "cifar10n" else "cifar-100-python"
    for candidate in (root / name, root / batches / name, root / "cifar10" / name, root / "cifar100" / name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{name} is neither in {root} nor beside its CIFAR batches ({root / batches}); it is the label file of the "
        "CIFAR-N release (https://github.com/UCSC-REAL/cifar-10-100n, data/)."
    )


def human_labels(
    dataset: str, label_set: str, data_dir: str | os.PathLike, *, num_train: int = NUM_TRAIN
) -> tuple[np.ndarray, np.ndarray]:
    """``(human labels, clean labels)`` of the ``num_train`` (50,000) training images, in the python batches'
    order.

    Raises:
      ValueError: an unknown label set (the message lists the allowed ones).
      FileNotFoundError: the label file is missing.
      DataFileError: the file is damaged, unsafe, or its arrays are not 50,000
        labels in range.
    """
    if dataset not in LABEL_SETS:
        raise ValueError(f"{dataset!r} has no human labels; allowed: {', '.join(LABEL_SETS)}.")
    if label_set not in LABEL_SETS[dataset]:
        raise ValueError(
            f"{dataset}:{label_set} is not a label set; allowed: "
            + ", ".join(f"{dataset}:{s}" for s in LABEL_SETS[dataset])
            + "."
        )
    path = find_label_file(dataset, data_dir)
    arrays = read_label_file(path)
    out = []
    for key in (LABEL_SETS[dataset][label_set], CLEAN):
        if key not in arrays:
            raise DataFileError(f"{path} has no {key!r} (it has {', '.join(sorted(arrays))}).")
        labels = np.asarray(arrays[key])
        if labels.shape != (num_train,) or not np.issubdtype(labels.dtype, np.integer):
            raise DataFileError(
                f"{path}: {key!r} is {labels.dtype}{list(labels.shape)}, not {num_train} integer labels."
            )
        if labels.min() < 0 or labels.max() >= NUM_CLASSES[dataset]:
            raise DataFileError(
                f"{path}: {key!r} holds labels {labels.min()}..{labels.max()}, outside 0..{NUM_CLASSES[dataset] - 1}."
            )
        out.append(labels.astype(np.int64))
    return out[0], out[1]
