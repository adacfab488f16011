"""Test configuration: quiet TensorFlow, two logical CPU devices, data paths, seeds.

The two logical CPU devices must exist before TensorFlow runs any op, so
they are configured here, at import time, before any test module imports
the package.
"""

import gzip
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Checks of image folders are cached (limit_tf.data.files); the tests keep theirs out of the home directory.
os.environ.setdefault("LIMIT_TF_CACHE", tempfile.mkdtemp(prefix="limit_tf_cache_"))

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


def write_idx(path: Path, array) -> None:
    """Writes an IDX file (gzip-compressed), the format of the MNIST files."""
    array = np.asarray(array, np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def _fake_images(rng, labels, learnable: bool):
    images = rng.integers(0, 256, (len(labels), 28, 28))
    if learnable:  # dim noise plus a bright 7x7 patch whose position encodes the class
        images //= 4
        for i, c in enumerate(labels):
            row, col = divmod(int(c), 4)
            images[i, 7 * row : 7 * row + 7, 7 * col : 7 * col + 7] = 255
    return images


def write_fake_mnist(root: Path, n_train: int = 600, n_test: int = 100, seed: int = 0, learnable: bool = False) -> Path:
    """Writes small MNIST-format files under ``root/mnist`` (labels i % 10).

    Images are random, or (``learnable``) carry a class-dependent patch.
    """
    rng = np.random.default_rng(seed)
    d = Path(root) / "mnist"
    d.mkdir(parents=True)
    y_train, y_test = np.arange(n_train) % 10, np.arange(n_test) % 10
    write_idx(d / "train-images-idx3-ubyte.gz", _fake_images(rng, y_train, learnable))
    write_idx(d / "train-labels-idx1-ubyte.gz", y_train)
    write_idx(d / "t10k-images-idx3-ubyte.gz", _fake_images(rng, y_test, learnable))
    write_idx(d / "t10k-labels-idx1-ubyte.gz", y_test)
    return d


def tiny_config(workdir, data_dir, **changes):
    """A fast experiment config on generated MNIST-format files (MLP, 200 examples)."""
    from limit_tf.config import ExperimentConfig

    settings = dict(
        workdir=str(workdir),
        data_dir=str(data_dir),
        architecture="mlp",
        noise="uniform",
        noise_rate=0.5,
        num_train_examples=200,
        epochs=2,
        batch_size=64,
        verify_data=False,  # generated files, not the published ones
    )
    return ExperimentConfig(**{**settings, **changes})


@pytest.fixture
def mnist_dir() -> Path:
    found = shared_data_dir()
    if found is None:
        pytest.skip("real MNIST files not found (set LIMIT_DATA_DIR)")
    return found


@pytest.fixture(autouse=True)
def seed():
    """Every test starts from the same seeds and float32, and leaves a clean Keras session."""
    keras.utils.set_random_seed(1234)
    yield 1234
    keras.mixed_precision.set_global_policy("float32")
    keras.backend.clear_session()


@pytest.fixture
def fake_data(tmp_path):
    """Small generated MNIST-format files (random images, labels i % 10)."""
    write_fake_mnist(tmp_path / "data", n_train=500, n_test=100)
    return str(tmp_path / "data")


@pytest.fixture
def rng():
    return np.random.default_rng(0)
