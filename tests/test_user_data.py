"""Your own data: image folders, CSV tables, npz files, tfds datasets; and what goes wrong with them."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from limit_tf import data, paths
from limit_tf.config import ConfigError, ExperimentConfig
from limit_tf.data import user
from tests.conftest import REPO


def _folder(root, classes=("cat", "dog"), per_class=6, size=(12, 10), mode="L", seed=0):
    rng = np.random.default_rng(seed)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = (size[1], size[0]) + (() if mode == "L" else (3,))
            pixels = rng.integers(0, 80, shape, dtype=np.uint8) + 100 * k  # classes differ in brightness
            Image.fromarray(pixels, mode).save(root / name / f"{i}.png")
    return root


def _csv(path, rows, header=("a", "b", "label")):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_an_image_folder_keeps_sizes_channels_class_names_and_files(tmp_path):
    got = user.load_folder(_folder(tmp_path / "imgs"))
    assert got.x.shape == (12, 10, 12, 1) and got.x.dtype == np.uint8  # grayscale stays one channel
    assert got.class_names == ("cat", "dog") and got.y.tolist() == [0] * 6 + [1] * 6
    assert got.origins[0] == "cat/0.png"
    _folder(tmp_path / "imgs", classes=("emu",), mode="RGB", size=(7, 7))
    with pytest.raises(
        user.UserDataError, match=r"2 sizes .e.g. .*emu/0.png is 7x7, .*cat/0.png is 12x10.; give --image_size"
    ):
        user.load_folder(tmp_path / "imgs")
    resized = user.load_folder(tmp_path / "imgs", image_size=16)
    assert resized.x.shape == (18, 16, 16, 3)  # one colour image makes all of them RGB
    assert resized.class_names == ("cat", "dog", "emu")


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda p: p / "nowhere", "is not a directory"),
        (lambda p: _folder(p / "one", classes=("cat",)), r"has 1 class folder \(cat\); at least two"),
        (lambda p: (_folder(p / "e"), (p / "e" / "owl").mkdir())[0], r"class folder .*owl is empty"),
        (
            lambda p: (_folder(p / "bad"), (p / "bad" / "dog" / "notes.txt").write_text("hello"))[0],
            r"bad/dog/notes.txt is not a readable image",
        ),
    ],
)
def test_image_folder_problems_name_the_culprit(tmp_path, make, match):
    with pytest.raises(user.UserDataError, match=match):
        user.load_folder(make(tmp_path))


def test_a_csv_table(tmp_path):
    path = _csv(tmp_path / "t.csv", [(1, 2, "yes"), (3, 4.5, "no"), (5, 6, "yes")])
    got = user.load_csv(path)
    assert got.x.tolist() == [[1, 2], [3, 4.5], [5, 6]] and got.class_names == ("no", "yes")
    assert got.y.tolist() == [1, 0, 1] and got.origins.tolist() == [2, 3, 4]  # lines of the file
    numeric = user.load_csv(_csv(tmp_path / "n.csv", [(0, 0, 10), (0, 0, 2)]))
    assert numeric.class_names == ("2", "10")  # numbers in numeric order


@pytest.mark.parametrize(
    "rows,header,match",
    [
        ([(1, 2, "x")], ("a", "b", "class"), r"has no label column 'label' \(columns: a, b, class\)"),
        ([(1, 2, "x"), (1, "two", "y")], None, r"line 3, column 'b': 'two' is not a number"),
        ([(1, 2, "x"), (1, "nan", "y")], None, r"line 3, column 'b': 'nan' is missing or not finite"),
        ([(1, 2, "x"), (1, "", "y")], None, r"line 3, column 'b': '' is not a number"),
        ([(1, 2, "x"), (3, 4, "x")], None, r"the label column 'label' has one value \('x'\)"),
    ],
)
def test_csv_problems_name_row_and_column(tmp_path, rows, header, match):
    path = _csv(tmp_path / "t.csv", rows, header or ("a", "b", "label"))
    with pytest.raises(user.UserDataError, match=match):
        user.load_csv(path)


def test_npz_and_tfds(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 3), np.float32), y=np.array([0, 1, 2, 1]))
    got = user.load_npz(tmp_path / "d.npz")
    assert got.class_names == ("0", "1", "2") and got.x.shape == (4, 3)
    np.savez(tmp_path / "bad.npz", x=np.zeros((4, 3)))
    with pytest.raises(user.UserDataError, match="lacks the array y"):
        user.load_npz(tmp_path / "bad.npz")
    with tfds.testing.mock_data(num_examples=30):
        ds = data.load_user_dataset("tfds:mnist", data_dir=tmp_path, allow_download=True)
    assert ds.class_names == tuple(str(k) for k in range(10)) and len(ds.test) == 30
    assert not ds.truth_known and ds.train.origins[0].startswith("train[")


def test_the_protocol_on_your_data_takes_labels_as_given(tmp_path):
    _folder(tmp_path / "train", per_class=20)
    _folder(tmp_path / "test", per_class=3, seed=1)
    ds = data.load_user_dataset(
        f"folder:{tmp_path / 'train'}", test_data=str(tmp_path / "test"), validation_fraction=0.25
    )
    assert (len(ds.train), len(ds.validation), len(ds.test)) == (30, 10, 6)
    assert not ds.truth_known and ds.realized_noise_rate == 0.0
    assert sorted(ds.train.origins.tolist() + ds.validation.origins.tolist())[0] == "cat/0.png"
    assert len(ds.mean) == 1 and ds.mean[0] == pytest.approx(np.asarray(ds.train.x).mean() / 255, rel=1e-6)
    assert ds.std[0] == pytest.approx(np.asarray(ds.train.x).std() / 255, rel=1e-6)
    injected = data.load_user_dataset(f"folder:{tmp_path / 'train'}", noise="uniform", noise_rate=0.5)
    assert injected.truth_known and 0.2 < injected.realized_noise_rate < 0.8
    (tmp_path / "test" / "owl").mkdir()
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(tmp_path / "test" / "owl" / "a.png")
    with pytest.raises(user.UserDataError, match="has classes the training data lacks: owl"):
        data.load_user_dataset(f"folder:{tmp_path / 'train'}", test_data=str(tmp_path / "test"))


def test_config_checks_your_data_before_anything_runs(tmp_path):
    with pytest.raises(ConfigError, match=r"--dataset='folder:.*nope': .*nope does not exist"):
        paths.check(ExperimentConfig(workdir=str(tmp_path / "w"), dataset=f"folder:{tmp_path / 'nope'}").validate())
    with pytest.raises(ConfigError, match="--test_data is for your own data"):
        ExperimentConfig(workdir=str(tmp_path / "w"), test_data="x").validate()
    table = _csv(tmp_path / "t.csv", [(1, 2, "x"), (3, 4, "y")])
    config = paths.check(ExperimentConfig(workdir=str(tmp_path / "w"), dataset=f"csv:{table}").validate())
    assert config.resolved_architecture == "mlp"
    assert config.differences(config.replace(dataset=f"csv:{tmp_path}/./t.csv")) == []


def test_the_runner_refuses_bad_data_with_one_line_and_writes_nothing(tmp_path):
    _folder(tmp_path / "imgs")
    (tmp_path / "imgs" / "dog" / "broken.png").write_bytes(b"not a png")
    command = [
        sys.executable,
        "-m",
        "limit_tf.main",
        f"--dataset=folder:{tmp_path / 'imgs'}",
        f"--workdir={tmp_path / 'w'}",
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "dog/broken.png is not a readable image" in result.stderr.splitlines()[-1]
    assert not (tmp_path / "w").exists()


def test_a_csv_table_end_to_end_from_the_command_line(tmp_path):
    """Train LIMIT on a table with wrong labels, find them, retrain CE without them: three commands."""
    rng = np.random.default_rng(1)
    names = np.array(["ant", "bee", "fly"])
    truth = rng.integers(0, 3, 240)
    features = rng.normal(size=(240, 4)) + 3.0 * np.eye(3, 4)[truth]  # the true class shows in the features
    wrong = rng.random(240) < 0.25
    given = np.where(wrong, (truth + rng.integers(1, 3, 240)) % 3, truth)
    _csv(
        tmp_path / "t.csv",
        [(*np.round(f, 4), names[g]) for f, g in zip(features, given, strict=True)],
        ("a", "b", "c", "d", "label"),
    )
    test = rng.integers(0, 3, 90)
    _csv(
        tmp_path / "test.csv",
        [
            (*np.round(f, 4), names[t])
            for f, t in zip(rng.normal(size=(90, 4)) + 3.0 * np.eye(3, 4)[test], test, strict=True)
        ],
        ("a", "b", "c", "d", "label"),
    )
    common = [
        f"--dataset=csv:{tmp_path / 't.csv'}",
        f"--test_data={tmp_path / 'test.csv'}",
        "--epochs=12",
        "--batch_size=32",
    ]

    def run(module, *args):
        result = subprocess.run(
            [sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr[-2000:]
        return result

    run(
        "limit_tf.main", *common, "--method=limit", "--predictor=laplace", "--beta=1", f"--workdir={tmp_path / 'limit'}"
    )
    run("limit_tf.detection", f"--workdir={tmp_path / 'limit'}")
    with open(tmp_path / "limit" / "detection_limit" / "label_issues.csv") as f:
        every = list(csv.DictReader(f))
    assert sorted(int(r["line"]) for r in every) == list(range(2, 2 + len(every)))  # every line of the file
    rows = [r for r in every if r["split"] == "train"]
    assert list(rows[0])[:4] == ["line", "observed_label", "suggested_label", "score"]
    assert {r["observed_label"] for r in rows} == set(names)  # class names, not numbers
    flagged = [int(r["line"]) - 2 for r in rows if r["flagged"] == "1"]  # line 1 is the header
    assert len(rows) == 192 and np.mean(wrong[flagged]) > 0.8  # 20% went to validation; flagged rows mostly wrong
    run("limit_tf.main", *common, "--method=ce", f"--clean_from={tmp_path / 'limit'}", f"--workdir={tmp_path / 'ce'}")
    results = json.loads((tmp_path / "ce" / "results.json").read_text())
    assert results["num_train_examples_used"] == len(rows) - len(flagged) and results["test_accuracy"] > 0.8
    assert results["class_names"] == ["ant", "bee", "fly"]


# --------------------------------------------------------------------------
# Hostile input: each case is refused with one line naming the file and what is wrong,
# or read the way a person would expect.


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "write,match",
    [
        (lambda p: _npz(p, x=np.arange(6.0), y=np.arange(6) % 2), r"x has shape \(6,\); one example per row"),
        (lambda p: _npz(p, x=np.float32(1.0), y=np.int64(0)), r"x has shape \(\); one example per row"),
        (lambda p: _npz(p, x=np.zeros((60, 3)), y=np.arange(50) % 2), r"x has 60 examples and y 50 labels"),
        (lambda p: _npz(p, x=np.zeros((6, 3)), y=np.zeros((6, 2))), r"y has shape \(6, 2\); one label per example"),
        (lambda p: _npz(p, x=np.zeros((6, 3)) + 1j, y=np.arange(6) % 2), r"x is complex"),
        (lambda p: _npz(p, x=np.full((6, 3), 1e300), y=np.arange(6) % 2), r"x\[0, 0\] is .*finite float32"),
        (lambda p: _npz(p, x=np.zeros((6, 3)), y=np.arange(6) - 1), r"y holds -1; labels must be integers >= 0"),
        (lambda p: _npz(p, x=np.zeros((6, 3)), y=np.full(6, 0.5)), r"y has dtype float64; labels must be integers"),
        (lambda p: _npz(p, x=np.zeros((6, 3))), r"lacks the array y \(it holds: x\)"),
        (
            lambda p: _npz(p, x=np.zeros((6, 3)), y=np.array([0, 1, 2, 0, 1, 2]), class_names=np.array(["a", "b"])),
            r"y holds 2 but class_names has 2 names",
        ),
        (
            lambda p: _npz(p, x=np.zeros((2, 3)), y=np.array([{"a": 1}, {"b": 2}], dtype=object)),
            r"holds object \(pickled\) arrays, and limit-tf never loads pickles",
        ),
        (
            lambda p: (np.save(p.with_suffix(".npy"), np.zeros((6, 3))), p.with_suffix(".npy").rename(p))[1],
            r"is a .npy file",
        ),
        (lambda p: (p.write_text("x,y\n1,2\n"), p)[1], r"is not an .npz file \(a zip archive"),
    ],
    ids=[
        "1-d x",
        "0-d arrays",
        "60 rows vs 50 labels",
        "one-hot y",
        "complex x",
        "beyond float32",
        "negative label",
        "fractional labels",
        "no y",
        "label beyond class_names",
        "pickled arrays",
        "a .npy file",
        "not a zip",
    ],
)
def test_a_bad_npz_file_is_one_line_naming_it(tmp_path, write, match):
    path = write(tmp_path / "data.npz")
    with pytest.raises(user.UserDataError, match=match) as error:
        user.load_npz(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_npz_string_labels_become_class_names_and_3d_images_get_a_channel(tmp_path):
    path = _npz(tmp_path / "d.npz", x=np.zeros((4, 5, 5), np.uint8), y=np.array(["owl", "cat", "owl", "cat"]))
    got = user.load_npz(path)
    assert got.class_names == ("cat", "owl") and got.y.tolist() == [1, 0, 1, 0]
    assert got.x.shape == (4, 5, 5, 1)
    assert (
        user.load_npz(_npz(tmp_path / "f.npz", x=np.zeros((4, 2)), y=np.array([0.0, 1.0, 1.0, 0.0]))).y.dtype
        == np.int64
    )


@pytest.mark.parametrize(
    "rows,match",
    [
        ([(1, 2, "x"), (1, 3, "NaN"), (2, 2, "y")], r"line 3: the label \('label'\) is missing \('NaN'\); 1 row"),
        ([(1, 2, "x"), (1, 3, "NA"), (2, 2, "")], r"line 3: the label \('label'\) is missing \('NA'\); 2 rows"),
        ([(1, 2, "x"), (1, "1e39", "y")], r"line 3, column 'b': '1e39' is beyond float32's range"),
        ([(1, 2, "x"), (1, "two", "y")], r"line 3, column 'b': 'two' is not a number"),
    ],
    ids=["NaN label", "NA and empty labels", "beyond float32", "text feature"],
)
def test_a_bad_csv_value_is_one_line_naming_its_line(tmp_path, rows, match):
    with pytest.raises(user.UserDataError, match=match):
        user.load_csv(_csv(tmp_path / "t.csv", rows))


def test_csv_numeric_labels_that_are_equal_are_one_class_and_origins_are_file_lines(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,label\n1,1\n\n2,1.0\n3,01\n4,2\n")  # a blank line: line numbers still match the file
    got = user.load_csv(path)
    assert got.class_names == ("1", "2") and got.y.tolist() == [0, 0, 0, 1]
    assert got.origins.tolist() == [2, 4, 5, 6]


def test_a_16_bit_grayscale_png_is_scaled_not_binarized(tmp_path):
    for k, name in enumerate(("dark", "light")):
        (tmp_path / "f" / name).mkdir(parents=True)
        ramp = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4000 + 1000 * k).astype(np.uint16)
        Image.fromarray(ramp).save(tmp_path / "f" / name / "a.png")  # PIL writes mode I;16
    got = user.load_folder(tmp_path / "f")
    values = got.x[0, ..., 0]
    assert len(np.unique(values)) == 16  # 16 grey levels, not 0/255
    np.testing.assert_allclose(values.reshape(-1), np.round(np.arange(16) * 4000 / 65535 * 255), atol=1)


def test_one_image_per_class_is_refused_it_would_train_on_one_class(tmp_path):
    _folder(tmp_path / "f", classes=("cat", "dog"), per_class=1)
    with pytest.raises(
        user.UserDataError, match=r"the training split holds one class \('\w+'\) of 2 \(the smallest has 1 example\)"
    ):
        data.load_user_dataset(f"folder:{tmp_path / 'f'}", validation_fraction=0.2)
