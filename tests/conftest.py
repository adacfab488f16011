"""Test configuration: quiet TensorFlow, two logical CPU devices, data paths, seeds.

The two logical CPU devices must exist before TensorFlow runs any op, so
they are configured here, at import time, before any test module imports
the package.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(_cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """The real data: $LIMIT_DATA_DIR, else ../shared/data beside the checkout."""
    for candidate in (os.environ.get("LIMIT_DATA_DIR"), REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "mnist" / "train-labels-idx1-ubyte.gz").is_file():
            return Path(candidate)
    return None


@pytest.fixture
def mnist_dir() -> Path:
    found = shared_data_dir()
    if found is None:
        pytest.skip("real MNIST files not found (set LIMIT_DATA_DIR)")
    return found


@pytest.fixture(autouse=True)
def seed():
    """Every test starts from the same seeds, and leaves a clean Keras session."""
    keras.utils.set_random_seed(1234)
    yield 1234
    keras.backend.clear_session()


@pytest.fixture
def rng():
    return np.random.default_rng(0)
