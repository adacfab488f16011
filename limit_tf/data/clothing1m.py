"""Clothing1M (Xiao et al., 2015): 1M clothing images with real label noise, read from files.

It does not fit in memory, so it is not a :class:`~limit_tf.data.protocol.NoisyDataset`;
``docs/usage.md`` shows how to train on it with ``model.fit`` (the paper's
ResNet-50, 30 epochs).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from limit_tf.data.pipeline import finish_pipeline
from limit_tf.data.registry import DataNotFoundError

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
    return finish_pipeline(ds.batch(int(batch_size)))
