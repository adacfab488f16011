"""An image folder is read from its files, batch by batch: the batches an in-memory copy would give,
every file checked before anything trains, and no array of every image, ever."""

import csv
import dataclasses

import numpy as np
import pytest
from PIL import Image

from limit_tf import data, runs, train
from limit_tf.config import ConfigError, ExperimentConfig
from limit_tf.data import files, user


def _folder(root, *, per_class=10, size=(10, 8), mode="RGB", suffix=".png", seed=0):
    rng = np.random.default_rng(seed)
    for k, name in enumerate(("cat", "dog", "owl")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            pixels = rng.integers(0, 120, shape, dtype=np.uint8) + 60 * k
            Image.fromarray(pixels).save(root / name / f"{k}{i:02d}{suffix}")
    return root


def _in_memory(dataset):
    """The same dataset with every split's images decoded into an array."""
    parts = {s: getattr(dataset, s) for s in ("train", "validation", "test")}
    return dataclasses.replace(dataset, **{s: dataclasses.replace(p, x=np.asarray(p.x)) for s, p in parts.items()})


def _by_hand(root, origins, color=True):
    return np.stack(
        [np.asarray(Image.open(root / o).convert("RGB" if color else "L")).reshape(8, 10, -1) for o in origins]
    )


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tiff"])  # TensorFlow's decoder, then Pillow's
def test_a_folder_is_files_that_decode_to_the_pixels_pillow_reads(tmp_path, suffix):
    root = _folder(tmp_path / "f", suffix=suffix)
    got = user.load_folder(root)
    assert isinstance(got.x, files.ImageFiles) and got.x.shape == (30, 8, 10, 3)
    assert got.x.native == (suffix == ".png")
    np.testing.assert_array_equal(np.asarray(got.x), _by_hand(root, got.origins))
    np.testing.assert_array_equal(got.x[7], _by_hand(root, got.origins[7:8])[0])
    picked = got.x[np.arange(30) % 3 == 0]
    assert picked.paths.tolist() == got.origins[::3].tolist() and picked.sums.shape == (10, 3)
    np.testing.assert_allclose(picked.sums, np.asarray(picked).reshape(10, -1, 3).sum(axis=1))


def test_a_grayscale_folder_resized_keeps_one_channel(tmp_path):
    root = _folder(tmp_path / "g", mode="L")
    got = user.load_folder(root, image_size=16)
    assert got.x.shape == (30, 16, 16, 1)
    expected = np.asarray(Image.open(root / got.origins[0]).resize((16, 16), resample=Image.Resampling.BICUBIC))
    assert np.abs(got.x[0][..., 0].astype(int) - expected).mean() < 2.0  # TensorFlow's bicubic, not Pillow's


@pytest.mark.parametrize("augment", [False, True])
def test_the_streamed_batches_are_the_batches_of_the_images_in_memory(tmp_path, augment):
    root = _folder(tmp_path / "f")
    dataset = data.load_user_dataset(f"folder:{root}", validation_fraction=0.2)
    dataset = dataclasses.replace(dataset, augment=augment)
    memory = _in_memory(dataset)
    streamed, steps = data.training_stream(dataset, batch_size=8, epochs=2, seed=3)
    held, _ = data.training_stream(memory, batch_size=8, epochs=2, seed=3)
    pairs = list(zip(streamed.take(2 * steps), held.take(2 * steps), strict=True))
    assert len(pairs) == 2 * steps
    for (x1, y1), (x2, y2) in pairs:
        np.testing.assert_allclose(x1.numpy(), x2.numpy(), rtol=0, atol=1e-6)
        np.testing.assert_array_equal(y1.numpy(), y2.numpy())
    resumed, _ = data.training_stream(dataset, batch_size=8, epochs=2, seed=3, first_epoch=1)
    for (x1, _), (x2, _) in zip(resumed.take(steps), [p[1] for p in pairs[steps:]], strict=True):
        np.testing.assert_allclose(x1.numpy(), x2.numpy(), rtol=0, atol=1e-6)
    for split in ("train", "validation"):
        streamed = list(data.to_tf_dataset(dataset, split, batch_size=4, with_metadata=True))
        held = list(data.to_tf_dataset(memory, split, batch_size=4, with_metadata=True))
        for e1, e2 in zip(streamed, held, strict=True):
            for key in ("label", "clean_label", "index"):
                np.testing.assert_array_equal(e1[key].numpy(), e2[key].numpy())
            np.testing.assert_allclose(e1["image"].numpy(), e2["image"].numpy(), rtol=0, atol=1e-6)
    values = np.asarray(dataset.train.x).astype(np.float64) / 255.0
    assert dataset.mean == pytest.approx(tuple(values.reshape(-1, 3).mean(axis=0)), rel=1e-9)
    assert dataset.std == pytest.approx(tuple(values.reshape(-1, 3).std(axis=0)), rel=1e-9)


def test_a_file_that_does_not_decode_is_named_before_anything_trains(tmp_path):
    root = _folder(tmp_path / "f")
    broken = root / "dog" / "105.png"
    whole = broken.read_bytes()
    broken.write_bytes(whole[: len(whole) // 2])  # the header reads; the pixels do not
    with pytest.raises(
        user.UserDataError, match=r"dog/105.png is not a readable image \(Invalid PNG data, size \d+\)\.$"
    ):
        user.load_folder(root)
    config = ExperimentConfig(workdir=str(tmp_path / "run"), dataset=f"folder:{root}", noise="none", epochs=1)
    with pytest.raises(ConfigError, match=r"dog/105.png is not a readable image \(Invalid PNG data"):
        train.run_experiment(config)
    assert not (tmp_path / "run" / "results.json").exists()


def test_a_folder_trains_and_every_file_is_scored_without_an_array_of_every_image(tmp_path, monkeypatch):
    root = _folder(tmp_path / "f", per_class=12, size=(16, 16))

    def refuse(self, dtype=None, copy=None):
        raise AssertionError(f"all {len(self)} images were decoded into one array")

    monkeypatch.setattr(files.ImageFiles, "__array__", refuse)
    config = ExperimentConfig(
        workdir=str(tmp_path / "run"), dataset=f"folder:{root}", noise="none", method="limit", epochs=1
    )
    results = train.run_experiment(config)
    assert results["epochs_run"] == 1
    found = runs.detect_in_run(tmp_path / "run")
    out = tmp_path / "run" / f"detection_{found['score']}"
    with open(out / "label_issues.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["path"] for r in rows) == sorted(str(p.relative_to(root)) for p in root.rglob("*.png"))
    assert (out / "suspects_grid.png").stat().st_size > 0


def test_a_check_is_kept_and_used_again_while_every_file_is_unchanged(tmp_path, monkeypatch):
    monkeypatch.setenv(files.CACHE_ENV, str(tmp_path / "cache"))
    root = _folder(tmp_path / "f")
    first = user.load_folder(root)
    assert len(list((tmp_path / "cache" / "folders").glob("*.npz"))) == 1

    def no_pass(images):
        raise AssertionError("the files were decoded again")

    monkeypatch.setattr(files, "_measure", no_pass)
    again = user.load_folder(root)  # detection, a resumed run: no second pass
    assert again.x.image_shape == first.x.image_shape and again.x.native == first.x.native
    np.testing.assert_array_equal(again.x.sums, first.x.sums)
    np.testing.assert_array_equal(again.x.paths, first.x.paths)
    with pytest.raises(AssertionError, match="decoded again"):
        user.load_folder(root, image_size=12)  # another size: another check
    changed = root / "owl" / "200.png"
    Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(changed)
    with pytest.raises(AssertionError, match="decoded again"):
        user.load_folder(root)  # a file changed: checked again
    changed.unlink()
    monkeypatch.setenv(files.CACHE_ENV, "off")
    with pytest.raises(AssertionError, match="decoded again"):
        user.load_folder(root)
