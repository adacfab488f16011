"""Datasets with label noise, in the paper's protocol, as numpy splits and ``tf.data``.

The package, by concept:

- :mod:`~limit_tf.data.formats`: readers of the original files, checksums;
- :mod:`~limit_tf.data.registry`: the named datasets and where their arrays
  come from (local files, tensorflow-datasets);
- :mod:`~limit_tf.data.protocol`: noisy train / validation / test splits
  (:func:`load_noisy_dataset`, :func:`from_arrays`);
- :mod:`~limit_tf.data.pipeline`: ``tf.data`` pipelines (:func:`training_stream`,
  :func:`to_tf_dataset`);
- :mod:`~limit_tf.data.user`: your own data (image folders, CSV tables,
  ``.npz`` files, any tensorflow-datasets dataset), through
  :func:`load_user_dataset`;
- :mod:`~limit_tf.data.clothing1m`: Clothing1M, read from files.

The common names are importable from ``limit_tf.data`` directly. Importing
the package does not import TensorFlow.
"""

from limit_tf.data.clothing1m import (
    CLOTHING1M_CLASSES,
    CLOTHING1M_MEAN,
    CLOTHING1M_STD,
    FileSplit,
    clothing1m_tf_dataset,
    load_clothing1m,
)
from limit_tf.data.formats import DataFileError, RawData, read_idx
from limit_tf.data.pipeline import steps_per_epoch, to_tf_dataset, training_stream
from limit_tf.data.protocol import (
    NoisyDataset,
    Split,
    clean,
    from_arrays,
    load_noisy_dataset,
    load_user_dataset,
    make_noisy_splits,
)
from limit_tf.data.registry import DATA_DIR_ENV, DATASETS, DataNotFoundError, get_spec, load_raw, resolve_data_dir
from limit_tf.data.user import UserDataError

__all__ = [
    "CLOTHING1M_CLASSES",
    "CLOTHING1M_MEAN",
    "CLOTHING1M_STD",
    "DATASETS",
    "DATA_DIR_ENV",
    "DataFileError",
    "DataNotFoundError",
    "FileSplit",
    "NoisyDataset",
    "RawData",
    "Split",
    "clothing1m_tf_dataset",
    "from_arrays",
    "get_spec",
    "load_clothing1m",
    "load_noisy_dataset",
    "load_user_dataset",
    "clean",
    "load_raw",
    "make_noisy_splits",
    "read_idx",
    "resolve_data_dir",
    "steps_per_epoch",
    "to_tf_dataset",
    "training_stream",
    "UserDataError",
]
