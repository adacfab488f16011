"""CIFAR-N's human label files: read without torch, and without running anything a pickle names."""

import os
import pickle
import zipfile

import numpy as np
import pytest

from limit_tf.data import cifar_n
from limit_tf.data.formats import DataFileError


def _save_like_torch(path, payload: bytes):
    """The layout torch.save writes: a zip archive with <name>/data.pkl (and a version record)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("CIFAR-10_human/data.pkl", payload)
        archive.writestr("CIFAR-10_human/version", "3\n")
    return path


def _labels(rng, n=cifar_n.NUM_TRAIN, k=10):
    clean = rng.integers(0, k, n)
    worse = np.where(rng.random(n) < 0.4, (clean + 1) % k, clean)
    return {"clean_label": clean, "worse_label": worse, "aggre_label": clean.copy(), "random_label1": worse.copy()}


def test_the_release_layout_is_read_with_the_clean_labels_as_truth(tmp_path, rng):
    arrays = _labels(rng)
    _save_like_torch(tmp_path / "CIFAR-10_human.pt", pickle.dumps(arrays, protocol=2))  # torch.save's protocol
    read = cifar_n.read_label_file(tmp_path / "CIFAR-10_human.pt")
    for key, value in arrays.items():
        np.testing.assert_array_equal(read[key], value)
    noisy, clean = cifar_n.human_labels("cifar10n", "worst", tmp_path)
    np.testing.assert_array_equal(noisy, arrays["worse_label"])
    np.testing.assert_array_equal(clean, arrays["clean_label"])
    # Beside the python batches works too.
    (tmp_path / "beside" / "cifar-10-batches-py").mkdir(parents=True)
    os.replace(tmp_path / "CIFAR-10_human.pt", tmp_path / "beside" / "cifar-10-batches-py" / "CIFAR-10_human.pt")
    assert cifar_n.find_label_file("cifar10n", tmp_path / "beside").parent.name == "cifar-10-batches-py"


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_a_pickle_that_names_anything_but_arrays_is_refused_and_nothing_runs(tmp_path, rng):
    _save_like_torch(tmp_path / "evil.pt", pickle.dumps({"clean_label": _Evil()}, protocol=2))
    with pytest.raises(DataFileError, match=r"names posix.system: limit-tf reads numeric arrays only"):
        cifar_n.read_label_file(tmp_path / "evil.pt")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p, rng: p.write_bytes(b"not a zip"), "is not a zip archive"),
        (lambda p, rng: zipfile.ZipFile(p, "w").close(), "without one data.pkl"),
        (lambda p, rng: _save_like_torch(p, b"\x80\x02garbage"), "is damaged"),
        (lambda p, rng: _save_like_torch(p, pickle.dumps([1, 2], protocol=2)), "does not hold a dict of arrays"),
    ],
    ids=["not_zip", "no_pickle", "damaged", "a_list"],
)
def test_files_that_are_not_label_files_are_one_line(tmp_path, rng, make, message):
    make(tmp_path / "CIFAR-10_human.pt", rng)
    with pytest.raises(DataFileError, match=message):
        cifar_n.read_label_file(tmp_path / "CIFAR-10_human.pt")


def test_wrong_sets_sizes_and_ranges_name_the_problem(tmp_path, rng):
    with pytest.raises(ValueError, match="cifar10n:noisy is not a label set; allowed: cifar10n:worst, cifar10n:aggre"):
        cifar_n.human_labels("cifar10n", "noisy", tmp_path)
    with pytest.raises(FileNotFoundError, match="CIFAR-10_human.pt is neither in"):
        cifar_n.human_labels("cifar10n", "worst", tmp_path)
    short = {k: v[:100] for k, v in _labels(rng).items()}
    _save_like_torch(tmp_path / "CIFAR-10_human.pt", pickle.dumps(short, protocol=2))
    with pytest.raises(DataFileError, match=r"'worse_label' is int64\[100\], not 50000 integer labels"):
        cifar_n.human_labels("cifar10n", "worst", tmp_path)
    bad = _labels(rng)
    bad["aggre_label"][0] = 10
    _save_like_torch(tmp_path / "CIFAR-10_human.pt", pickle.dumps(bad, protocol=2))
    with pytest.raises(DataFileError, match=r"'aggre_label' holds labels 0..10, outside 0..9"):
        cifar_n.human_labels("cifar10n", "aggre", tmp_path)
    with pytest.raises(DataFileError, match="has no 'random_label2'"):
        cifar_n.human_labels("cifar10n", "random2", tmp_path)


def _cifar_batches(root, rng, per_batch=40):
    """A small copy of CIFAR-10's python batches; returns the training labels in the batches' order."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    labels = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = per_batch if name != "test_batch" else 20
        y = rng.integers(0, 10, n)
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": [int(v) for v in y]}
        (folder / name).write_bytes(pickle.dumps(batch))
        if name != "test_batch":
            labels.append(y)
    return np.concatenate(labels)


def test_cifar10n_trains_on_the_human_labels_with_the_clean_ones_as_truth(tmp_path, rng):
    from limit_tf import data, train
    from limit_tf.config import ConfigError, ExperimentConfig

    clean = _cifar_batches(tmp_path, rng)
    worse = np.where(rng.random(len(clean)) < 0.4, (clean + 1) % 10, clean)
    arrays = {"clean_label": clean, "worse_label": worse, "aggre_label": clean}
    _save_like_torch(tmp_path / "CIFAR-10_human.pt", pickle.dumps(arrays, protocol=2))
    ds = data.load_noisy_dataset("cifar10n:worst", data_dir=tmp_path, noise="none", verify=False)
    index = ds.train.source_indices
    np.testing.assert_array_equal(ds.train.labels, worse[index])  # what people said
    np.testing.assert_array_equal(ds.train.clean_labels, clean[index])  # the truth
    np.testing.assert_array_equal(ds.validation.labels, worse[ds.validation.source_indices])  # noisy validation too
    assert ds.truth_known and ds.realized_noise_rate == pytest.approx(np.mean(worse[index] != clean[index]))
    assert ds.class_names[0] == "airplane" and ds.augment  # CIFAR's protocol
    with pytest.raises(ValueError, match="has human labels: no noise is added"):
        data.load_noisy_dataset("cifar10n:worst", data_dir=tmp_path, noise="uniform", noise_rate=0.2, verify=False)
    # A label file of other images (or another order) is refused.
    arrays["clean_label"] = np.roll(clean, 1)
    _save_like_torch(tmp_path / "CIFAR-10_human.pt", pickle.dumps(arrays, protocol=2))
    with pytest.raises(DataFileError, match="differ from the CIFAR batches'"):
        data.load_noisy_dataset("cifar10n:aggre", data_dir=tmp_path, noise="none", verify=False)
    arrays["clean_label"] = clean
    _save_like_torch(tmp_path / "CIFAR-10_human.pt", pickle.dumps(arrays, protocol=2))
    # From the runner: the config knows the label sets, and the run's report has the truth.
    with pytest.raises(ConfigError, match=r"--dataset='cifar10n:best' is not a label set; allowed: cifar10n:worst"):
        ExperimentConfig(workdir="w", dataset="cifar10n:best").validate()
    with pytest.raises(ConfigError, match="--noise_rate=0.2 is not allowed with --dataset=cifar10n:worst"):
        ExperimentConfig(workdir="w", dataset="cifar10n:worst", noise_rate=0.2).validate()
    config = ExperimentConfig(
        workdir=str(tmp_path / "run"),
        dataset="cifar10n:worst",
        noise="none",
        data_dir=str(tmp_path),
        verify_data=False,
        architecture="mlp",
        epochs=1,
        patience=1,
    )
    results = train.run_experiment(config)
    assert results["labels_truth_known"] and results["realized_noise_rate"] == pytest.approx(ds.realized_noise_rate)
