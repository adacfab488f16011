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
