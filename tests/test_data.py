import gzip
import io
import pickle
import tarfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from limit_tf import data
from tests.conftest import write_fake_mnist as _fake_mnist_dir


def _cifar_blob(n, label_key, num_classes, rng):
    batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), label_key: list(rng.integers(0, num_classes, n))}
    return pickle.dumps(batch)


def test_real_mnist_from_local_files(mnist_dir):
    raw = data.load_raw("mnist", mnist_dir)
    assert raw.x_train.shape == (60000, 28, 28, 1) and raw.x_train.dtype == np.uint8
    assert raw.x_test.shape == (10000, 28, 28, 1)
    # Class counts published with the files (../shared/data/README.md).
    assert np.bincount(raw.y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert raw.x_train.mean() / 255 == pytest.approx(0.1307, abs=1e-3)


def test_real_mnist_protocol(mnist_dir):
    ds = data.load_noisy_dataset(
        "mnist", data_dir=mnist_dir, num_train_examples=1000, noise="uniform", noise_rate=0.8, seed=3
    )
    assert (len(ds.train), len(ds.validation), len(ds.test)) == (1000, 12000, 10000)
    assert ds.realized_noise_rate == pytest.approx(0.8, abs=0.05)
    assert ds.validation.noise_rate == pytest.approx(0.8, abs=0.02)  # validation carries the noise
    assert ds.test.noise_rate == 0.0
    # Train and validation come from disjoint parts of the official training set.
    assert not set(ds.train.source_indices) & set(ds.validation.source_indices)


def test_data_dir_from_environment(tmp_path, monkeypatch):
    _fake_mnist_dir(tmp_path)
    monkeypatch.setenv("LIMIT_DATA_DIR", str(tmp_path))
    assert data.load_raw("mnist", verify=False).x_train.shape == (600, 28, 28, 1)


def test_split_protocol_on_generated_files(tmp_path):
    _fake_mnist_dir(tmp_path)
    kw = dict(data_dir=tmp_path, noise="uniform", noise_rate=0.5, seed=1, verify=False)
    small = data.load_noisy_dataset("mnist", num_train_examples=50, **kw)
    large = data.load_noisy_dataset("mnist", num_train_examples=400, **kw)
    # 600 examples: validation keeps MNIST's 12k/60k share.
    assert len(small.validation) == 120 and len(small.train) == 50
    # Nested subsets: the first 50 examples and their noisy labels do not depend on n.
    np.testing.assert_array_equal(small.train.source_indices, large.train.source_indices[:50])
    np.testing.assert_array_equal(small.train.labels, large.train.labels[:50])
    np.testing.assert_array_equal(small.validation.labels, large.validation.labels)
    again = data.load_noisy_dataset("mnist", num_train_examples=50, **kw)
    np.testing.assert_array_equal(small.train.labels, again.train.labels)
    other = data.load_noisy_dataset("mnist", num_train_examples=50, **{**kw, "seed": 2})
    assert not np.array_equal(small.train.source_indices, other.train.source_indices)


def test_clean_validation_option(tmp_path):
    _fake_mnist_dir(tmp_path)
    ds = data.load_noisy_dataset(
        "mnist", data_dir=tmp_path, noise="uniform", noise_rate=0.6, clean_validation=True, verify=False
    )
    assert ds.validation.noise_rate == 0.0 and ds.realized_noise_rate > 0.4


def test_user_matrix(tmp_path):
    _fake_mnist_dir(tmp_path)
    t = np.eye(10)
    t[0] = 0.0
    t[0, 1] = 1.0  # every 0 becomes a 1
    ds = data.load_noisy_dataset("mnist", data_dir=tmp_path, noise_matrix=t, verify=False)
    assert set(ds.train.labels[ds.train.clean_labels == 0]) == {1}
    assert ds.train.noise_mask.sum() == (ds.train.clean_labels == 0).sum()


@pytest.mark.parametrize("packed", [False, True])
def test_cifar10_pickles(tmp_path, packed):
    rng = np.random.default_rng(0)
    blobs = {f"data_batch_{i}": _cifar_blob(20, b"labels", 10, rng) for i in range(1, 6)}
    blobs["test_batch"] = _cifar_blob(10, b"labels", 10, rng)
    if packed:
        (tmp_path / "cifar10").mkdir()
        with tarfile.open(tmp_path / "cifar10" / "cifar-10-python.tar.gz", "w:gz") as tar:
            for name, blob in blobs.items():
                info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
    else:
        folder = tmp_path / "cifar-10-batches-py"
        folder.mkdir()
        for name, blob in blobs.items():
            (folder / name).write_bytes(blob)
    raw = data.load_raw("cifar10", tmp_path, verify=False)
    assert raw.x_train.shape == (100, 32, 32, 3) and raw.x_test.shape == (10, 32, 32, 3)
    first = pickle.loads(blobs["data_batch_1"])[b"data"][0]
    np.testing.assert_array_equal(raw.x_train[0, :, :, 0].ravel(), first[:1024])  # channel-first rows -> HWC


def test_cifar100_fine_labels(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    (folder / "train").write_bytes(_cifar_blob(50, b"fine_labels", 100, rng))
    (folder / "test").write_bytes(_cifar_blob(10, b"fine_labels", 100, rng))
    ds = data.load_noisy_dataset("cifar100", data_dir=tmp_path, noise="uniform", noise_rate=0.2, verify=False)
    assert ds.class_names[:3] == ("apple", "aquarium_fish", "baby") and len(ds.class_names) == 100
    assert ds.num_classes == 100 and ds.augment


def test_tfds_path_with_mock_data(tmp_path):
    with tfds.testing.mock_data(num_examples=40):
        ds = data.load_noisy_dataset(
            "cifar10", data_dir=tmp_path, source="tfds", allow_download=True, noise="pair", noise_rate=0.4
        )
    assert ds.train.x.shape[1:] == (32, 32, 3)
    assert len(ds.train) + len(ds.validation) == 40 and len(ds.test) == 40


def test_offline_without_data_fails_fast(tmp_path):
    with pytest.raises(data.DataNotFoundError, match="not found offline.*downloads are off"):
        data.load_raw("fashion_mnist", tmp_path)
    with pytest.raises(data.DataNotFoundError, match="not found in local files"):
        data.load_raw("mnist", tmp_path, source="local")


def test_corrupt_and_truncated_files(tmp_path):
    d = _fake_mnist_dir(tmp_path)
    (d / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not a gzip file")
    with pytest.raises(data.DataFileError, match="t10k-labels-idx1-ubyte.gz is corrupt"):
        data.load_raw("mnist", tmp_path, verify=False)
    with gzip.open(d / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + (100).to_bytes(4, "big") + bytes(10))
    with pytest.raises(data.DataFileError, match="truncated or corrupt"):
        data.load_raw("mnist", tmp_path, verify=False)


def test_bad_arguments(tmp_path):
    _fake_mnist_dir(tmp_path)
    with pytest.raises(ValueError, match="unknown dataset 'svhn'"):
        data.load_noisy_dataset("svhn", data_dir=tmp_path)
    with pytest.raises(
        ValueError, match=r"num_train_examples=50000 is not allowed for mnist: it must be in \[1, 48000\]"
    ):
        data.load_noisy_dataset("mnist", data_dir=tmp_path, num_train_examples=50000, verify=False)
    with pytest.raises(ValueError, match="noise rate 1.0 is outside"):
        data.load_noisy_dataset("mnist", data_dir=tmp_path, noise_rate=1.0, verify=False)
    with pytest.raises(ValueError, match="row 1 sums to"):
        bad = np.eye(10)
        bad[1, 2] = 0.5
        data.load_noisy_dataset("mnist", data_dir=tmp_path, noise_matrix=bad, verify=False)
    with pytest.raises(ValueError, match="unknown data source"):
        data.load_raw("mnist", tmp_path, source="web")


def test_pipeline_carries_metadata_and_normalizes(tmp_path):
    _fake_mnist_dir(tmp_path)
    ds = data.load_noisy_dataset("mnist", data_dir=tmp_path, noise="uniform", noise_rate=0.5, verify=False)
    batch = next(iter(data.to_tf_dataset(ds, "train", batch_size=32, with_metadata=True)))
    idx = batch["index"].numpy()
    np.testing.assert_array_equal(batch["label"].numpy(), ds.train.labels[idx])
    np.testing.assert_array_equal(batch["clean_label"].numpy(), ds.train.clean_labels[idx])
    expected = (ds.train.x[idx].astype(np.float32) / 255.0 - 0.456) / 0.224
    np.testing.assert_allclose(batch["image"].numpy(), expected, rtol=1e-5, atol=1e-5)
    x, y = next(iter(data.to_tf_dataset(ds, "test", batch_size=7)))
    assert x.shape == (7, 28, 28, 1) and x.dtype == tf.float32 and y.dtype == tf.int32


def test_training_stream_orders_each_epoch_by_seed_and_epoch_only(rng):
    x = np.arange(100, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)  # row i holds i
    ds = data.from_arrays(x, np.arange(100) % 2, x_test=x[:10], y_test=np.zeros(10, int), validation_fraction=0.1)
    order = np.round(ds.train.x[:, 0]).astype(int)

    def epochs(first, last, seed=1):
        stream, steps = data.training_stream(ds, batch_size=32, epochs=last, seed=seed, first_epoch=first)
        rows = np.concatenate([np.round(b[0].numpy()[:, 0]).astype(int) for b in stream])
        return rows.reshape(last - first, -1), steps

    full, steps = epochs(0, 3)
    assert steps == 3 and full.shape == (3, 90)
    assert all(sorted(e) == sorted(order) for e in full)  # every example once per epoch
    assert not np.array_equal(full[0], full[1])  # reshuffled each epoch
    resumed, _ = epochs(2, 3)
    np.testing.assert_array_equal(resumed[0], full[2])  # epoch 2 is the same whatever came before
    other, _ = epochs(0, 3, seed=2)
    assert not np.array_equal(other[0], full[0])
    with pytest.raises(ValueError, match="first_epoch=3 is not allowed"):
        data.training_stream(ds, batch_size=32, epochs=3, first_epoch=3)


def test_cifar_augmentation_only_in_training(rng):
    x = rng.integers(0, 256, (60, 32, 32, 3), dtype=np.uint8)
    ds = data.from_arrays(x, np.arange(60) % 10, num_classes=10)
    ds = data.NoisyDataset(**{**ds.__dict__, "augment": True})
    stream, _ = data.training_stream(ds, batch_size=len(ds.train), epochs=2, seed=0)
    first, second = (batch[0].numpy() for batch in stream)
    raw = ds.train.x.astype(np.float32) / 255.0
    assert first.shape == raw.shape
    # Cropped / flipped: no training image equals its raw version exactly, and epochs differ.
    assert not any(np.allclose(img, r) for img in first[:10] for r in raw)
    assert not np.allclose(first, second)
    test = next(iter(data.to_tf_dataset(ds, "test", batch_size=8)))[0]
    np.testing.assert_allclose(test.numpy(), ds.test.x[:8].astype(np.float32) / 255.0, atol=1e-6)


def test_from_arrays_tabular(rng):
    x = rng.normal(size=(500, 6)).astype(np.float32) * 5 + 3
    y = (x[:, 0] > 3).astype(int)
    ds = data.from_arrays(x, y, noise="uniform", noise_rate=0.2, normalize=True, seed=4)
    assert ds.num_classes == 2 and ds.input_shape == (6,)
    assert len(ds.test) == 100 and len(ds.validation) == 80 and len(ds.train) == 320
    assert ds.test.noise_rate == 0.0
    xb, _ = next(iter(data.to_tf_dataset(ds, "train", batch_size=320)))
    np.testing.assert_allclose(xb.numpy().mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(xb.numpy().std(axis=0), 1.0, atol=1e-3)


@pytest.mark.parametrize(
    "x,y,match",
    [
        (np.zeros((3, 2)), np.zeros(2, int), r"x has shape \(3, 2\) and y \(2,\)"),
        (np.array([[0.0, np.nan], [1.0, 2.0]]), [0, 1], r"x hold nan at index \(0, 1\)"),
        (np.array([["a", "b"], ["c", "d"]]), [0, 1], "x have dtype <U1: numbers are required"),
        (np.zeros((2, 2)), [0.0, 1.5], r"labels y hold a fractional value \(1.5 at index 1\)"),
        (np.zeros((2, 2)), [0, -1], r"labels y span \[-1, 0\]"),
    ],
)
def test_from_arrays_rejects_bad_inputs(x, y, match):
    with pytest.raises(ValueError, match=match):
        data.from_arrays(x, y, num_classes=2 if min(y) < 0 else None)


def test_from_arrays_accepts_whole_float_labels_and_class_names(rng):
    ds = data.from_arrays(rng.normal(size=(40, 3)), np.arange(40) % 2 * 1.0, class_names=("no", "yes"))
    assert ds.train.labels.dtype == np.int64 and ds.class_names == ("no", "yes")
    with pytest.raises(ValueError, match="class_names has 3 names for 2 classes"):
        data.from_arrays(rng.normal(size=(40, 3)), np.arange(40) % 2, class_names=("a", "b", "c"))


def test_published_checksums_catch_an_altered_file(tmp_path, mnist_dir):
    import shutil

    raw = data.load_raw("mnist", mnist_dir)  # the real files pass
    assert data.get_spec("mnist").class_names[7] == "7"
    copy = tmp_path / "mnist"
    shutil.copytree(mnist_dir / "mnist", copy)
    labels = copy / "train-labels-idx1-ubyte.gz"
    with gzip.open(labels, "wb") as f:  # a well-formed IDX file whose labels are all 0
        f.write(bytes([0, 0, 8, 1]) + (60000).to_bytes(4, "big") + bytes(60000))
    with pytest.raises(data.DataFileError, match="train-labels-idx1-ubyte.gz is not the published mnist file"):
        data.load_raw("mnist", tmp_path)
    altered = data.load_raw("mnist", tmp_path, verify=False)  # on purpose
    assert altered.y_train.max() == 0 and altered.x_train.shape == raw.x_train.shape


def test_clothing1m_manual_dir(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    keys = []
    for i in range(6):
        key = f"images/{i}.jpg"
        tf.io.write_file(str(tmp_path / key), tf.io.encode_jpeg(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)))
        keys.append(key)
    (tmp_path / "noisy_label_kv.txt").write_text("".join(f"{k} {i % 14}\n" for i, k in enumerate(keys[:4])))
    (tmp_path / "clean_label_kv.txt").write_text("".join(f"{k} {i}\n" for i, k in enumerate(keys)))
    (tmp_path / "noisy_train_key_list.txt").write_text("\n".join(keys[:4]))
    (tmp_path / "clean_val_key_list.txt").write_text(keys[4])
    (tmp_path / "clean_test_key_list.txt").write_text(keys[5])
    splits = data.load_clothing1m(tmp_path)
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [4, 1, 1]
    assert splits["test"].labels.tolist() == [5]
    x, y = next(iter(data.clothing1m_tf_dataset(splits["train"], batch_size=4, training=True)))
    assert x.shape == (4, 224, 224, 3) and y.shape == (4,)
    (tmp_path / "clean_test_key_list.txt").write_text("images/unknown.jpg")
    with pytest.raises(ValueError, match="have no label in clean_label_kv.txt"):
        data.load_clothing1m(tmp_path)
