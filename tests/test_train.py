"""The paper's protocol over a work dir: outputs, selection, resume, refusals."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from limit_tf import config as config_lib
from limit_tf import train, workdir
from limit_tf.checkpoint import TrainingCheckpoint
from limit_tf.config import ConfigError
from tests.conftest import tiny_config

LIMIT_S = dict(method="limit", predictor="laplace", beta=1.0, sample=True, sigma_q=0.1)


def _config(tmp_path, fake_data, workdir=None, **changes):
    settings = {"epochs": 4, "patience": 10, "deterministic": True, **changes}
    return tiny_config(workdir or tmp_path / "run", fake_data, **settings)


def test_run_writes_everything(tmp_path, fake_data):
    config = _config(tmp_path, fake_data, method="limit", predictor="gaussian", beta=1.0, track_test_accuracy=True)
    results = train.run_experiment(config)
    run = workdir.RunDir(tmp_path / "run")
    for name in (
        "config.json",
        "labels.npz",
        "metrics.csv",
        "best.weights.h5",
        "best.keras",
        "selection.json",
        "results.json",
    ):
        assert run.file(name).is_file(), name
    assert any((run.path / "tensorboard").rglob("events.out.tfevents*"))
    assert not run.checkpoint_dir.exists()  # removed when the run finished
    assert results["epochs_run"] == 4 and 1 <= results["best_epoch"] <= 4
    assert results["versions"]["keras"] == keras.__version__
    assert run.results() == json.loads(json.dumps(results))
    labels = run.labels()
    assert labels["train_noise_mask"].mean() == pytest.approx(results["realized_noise_rate"])
    np.testing.assert_array_equal(labels["train_noise_mask"], labels["train_labels"] != labels["train_clean_labels"])
    assert labels["class_names"].tolist() == [str(k) for k in range(10)]
    metrics = run.metrics()
    assert [m["epoch"] for m in metrics] == [0, 1, 2, 3]
    for key in (
        "train_acc_clean_subset",
        "train_acc_corrupted_subset",
        "val_accuracy",
        "q_loss",
        "test_accuracy_monitor",
    ):
        assert key in metrics[0], key
    best = max(metrics, key=lambda m: m["val_accuracy"])  # the first of equal maxima, as the selection keeps it
    assert results["best_epoch"] == best["epoch"] + 1
    assert results["best_val_accuracy"] == pytest.approx(best["val_accuracy"])
    # The best model opens with plain Keras and gives the reported test accuracy.
    model = keras.models.load_model(run.file("best.keras"))
    dataset = train.load_data(config)
    logits = model.predict(_normalized(dataset.test.x), verbose=0)
    assert np.mean(logits.argmax(axis=1) == dataset.test.labels) == pytest.approx(results["test_accuracy"], abs=1e-6)


def _normalized(x):
    return (x.astype(np.float32) / 255.0 - 0.456) / 0.224


def test_early_stopping_by_patience(tmp_path, fake_data):
    results = train.run_experiment(_config(tmp_path, fake_data, method="ce", epochs=30, patience=2, learning_rate=1e-5))
    assert results["stopped_early"]
    assert results["epochs_run"] == results["best_epoch"] + 2


class MustNotTrain(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        raise AssertionError("a finished run was trained again")


def test_a_finished_run_is_reported_when_only_execution_settings_differ(tmp_path, fake_data, monkeypatch):
    config = _config(tmp_path, fake_data, method="ce", epochs=2)
    first = train.run_experiment(config)
    monkeypatch.chdir(tmp_path)
    same = [
        config.replace(workdir="run/"),
        config.replace(workdir="./run"),
        config.replace(track_test_accuracy=True, data_source="local", deterministic=False),
        config.replace(beta=5.0),  # CE does not read beta
    ]
    for other in same:
        assert train.run_experiment(other, callbacks=[MustNotTrain()]) == first


def test_a_finished_run_of_another_experiment_is_refused(tmp_path, fake_data):
    config = _config(tmp_path, fake_data, method="ce", epochs=1)
    train.run_experiment(config)
    with pytest.raises(ConfigError, match="holds a finished run of a different experiment .differs in: epochs"):
        train.run_experiment(config.replace(epochs=3), callbacks=[MustNotTrain()])


def test_progress_of_another_experiment_is_refused_but_a_bare_config_is_replaced(tmp_path, fake_data):
    config = _config(tmp_path, fake_data, method="ce", epochs=3)
    with pytest.raises(KeyboardInterrupt):
        train.run_experiment(config, callbacks=[_Interrupt(at_epoch=0)])
    with pytest.raises(ConfigError, match="holds a different experiment .differs in: learning_rate"):
        train.prepare(config.replace(learning_rate=0.01))
    # A work dir with a config but no finished epoch (e.g. a failed start) takes the corrected command.
    bare = _config(tmp_path, fake_data, workdir=tmp_path / "bare", method="ce", epochs=1)
    bare_run = workdir.RunDir(bare.workdir)
    bare_run.path.mkdir()
    bare_run.write_config(bare.replace(learning_rate=0.5).to_dict())
    assert train.run_experiment(bare)["epochs_run"] == 1


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at_epoch:
            raise KeyboardInterrupt("simulated kill")


def _assert_same(run_a, run_b, results_a, results_b):
    for key in ("test_accuracy", "best_val_accuracy", "best_epoch", "epochs_run"):
        assert results_a[key] == results_b[key], key
    metrics_a, metrics_b = workdir.RunDir(run_a).metrics(), workdir.RunDir(run_b).metrics()
    assert [m["epoch"] for m in metrics_b] == [m["epoch"] for m in metrics_a]  # no epoch lost or duplicated
    for a, b in zip(metrics_a, metrics_b, strict=True):
        assert a["val_accuracy"] == b["val_accuracy"] and a["loss"] == pytest.approx(b["loss"], rel=1e-6)
    weights_a = keras.models.load_model(run_a / "best.keras").get_weights()
    for a, b in zip(weights_a, keras.models.load_model(run_b / "best.keras").get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("method", ["ce", "limit"])
def test_resume_after_interruption_matches_uninterrupted_run(tmp_path, fake_data, method):
    extra = LIMIT_S if method == "limit" else {"method": "ce"}
    reference = train.run_experiment(_config(tmp_path, fake_data, workdir=tmp_path / "ref", **extra))
    config = _config(tmp_path, fake_data, **extra)
    with pytest.raises(KeyboardInterrupt):
        train.run_experiment(config, callbacks=[_Interrupt(at_epoch=1)])
    run = workdir.RunDir(config.workdir)
    assert not run.finished
    assert sorted(p.name for p in run.checkpoint_dir.glob("*.index")) == ["epoch-1.index", "epoch-2.index"]
    resumed = train.run_experiment(config)
    _assert_same(tmp_path / "ref", tmp_path / "run", reference, resumed)


def test_resume_survives_a_damaged_checkpoint_and_a_torn_metrics_file(tmp_path, fake_data):
    reference = train.run_experiment(_config(tmp_path, fake_data, workdir=tmp_path / "ref", **LIMIT_S))
    config = _config(tmp_path, fake_data, **LIMIT_S)
    with pytest.raises(KeyboardInterrupt):
        train.run_experiment(config, callbacks=[_Interrupt(at_epoch=2)])
    run = workdir.RunDir(config.workdir)
    newest = next(run.checkpoint_dir.glob("epoch-3.data-*"))
    newest.write_bytes(newest.read_bytes()[:100])  # a kill in the middle of the write
    text = run.file("metrics.csv").read_text()
    run.file("metrics.csv").write_text(text[: len(text) - 30])  # a torn last row
    run.file("selection.json").write_text('{"best_ep')  # and a torn selection file
    resumed = train.run_experiment(config)
    _assert_same(tmp_path / "ref", tmp_path / "run", reference, resumed)


def test_a_corrupt_file_gives_one_line_naming_it(tmp_path, fake_data):
    config = _config(tmp_path, fake_data, method="ce", epochs=1)
    train.run_experiment(config)
    run = workdir.RunDir(config.workdir)
    run.file("results.json").write_text("{")
    with pytest.raises(workdir.CorruptFileError, match=r"run/results.json is corrupt .*; delete it and rerun"):
        train.run_experiment(config)
    run.file("results.json").unlink()
    run.file("config.json").write_text('{"method"')
    with pytest.raises(workdir.CorruptFileError, match=r"run/config.json is corrupt"):
        train.prepare(config)


def test_nan_loss_stops_with_last_good_checkpoint(tmp_path, fake_data):
    class Poison(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                weight = self.model.trainable_variables[-1]  # the logits bias: NaN reaches the loss
                weight.assign(np.full(weight.shape, np.nan, np.float32))

    config = _config(tmp_path, fake_data, method="ce", epochs=5)
    with pytest.raises(train.TrainingDivergedError, match="loss became nan in epoch 3"):
        train.run_experiment(config, callbacks=[Poison()])
    run = workdir.RunDir(config.workdir)
    assert run.selection()["last_epoch"] == 1 and [m["epoch"] for m in run.metrics()] == [0, 1]
    model = train.build_model(config, train.load_data(config), tf.distribute.get_strategy())
    checkpoint = TrainingCheckpoint(model, run.checkpoint_dir)
    epoch, state = checkpoint.restore_newest()
    assert epoch == 2 and state["selection"]["last_epoch"] == 1
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())  # the last good epoch, not the poisoned one


def test_init_from_a_ce_run_and_a_mismatched_one_is_refused_before_anything_is_written(tmp_path, fake_data):
    train.run_experiment(_config(tmp_path, fake_data, method="ce", epochs=1, workdir=tmp_path / "ce"))
    config = _config(
        tmp_path, fake_data, method="limit", predictor="laplace", beta=1.0, epochs=1, init_from=str(tmp_path / "ce")
    )
    dataset = train.load_data(config)
    model = train.build_model(config, dataset, tf.distribute.get_strategy())  # "+init": q starts as the CE model
    ce = keras.models.load_model(tmp_path / "ce" / workdir.BEST_MODEL)
    np.testing.assert_array_equal(np.asarray(model.predictor_network.weights[0]), np.asarray(ce.weights[0]))
    assert not np.array_equal(np.asarray(model.classifier.weights[0]), np.asarray(ce.weights[0]))
    assert train.run_experiment(config)["test_accuracy"] is not None
    wrong = _config(
        tmp_path,
        fake_data,
        workdir=tmp_path / "wrong",
        method="dmi",
        epochs=1,
        architecture="mnist_cnn",
        init_from=str(tmp_path / "ce"),
    )
    with pytest.raises(ConfigError, match="architecture 'mlp'; this run's architecture is 'mnist_cnn'"):
        train.run_experiment(wrong)
    assert not (tmp_path / "wrong").exists()


def _image_folder(root, size=12, per_class=10):
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 80, (size, size), dtype=np.uint8) + 100 * k
            Image.fromarray(pixels).save(root / name / f"{k}{i:02d}.png")
    return root


def test_a_workdir_with_the_users_own_files_is_refused_and_left_alone(tmp_path, fake_data):
    mine = tmp_path / "mine"
    (mine / "checkpoints").mkdir(parents=True)
    (mine / "checkpoints" / "model.ckpt").write_text("precious")
    (mine / "metrics.csv").write_text("epoch,loss\n0,1.0\n")
    with pytest.raises(ConfigError, match=r"--workdir=.*mine' holds files that limit-tf did not write"):
        train.run_experiment(_config(tmp_path, fake_data, workdir=mine))
    assert (mine / "checkpoints" / "model.ckpt").read_text() == "precious"
    assert sorted(p.name for p in mine.iterdir()) == ["checkpoints", "metrics.csv"]


def test_a_finished_run_on_changed_files_is_refused_naming_what_changed(tmp_path):
    folder = _image_folder(tmp_path / "imgs")
    config = train.ExperimentConfig(
        workdir=str(tmp_path / "run"), dataset=f"folder:{folder}", noise="none", architecture="mlp", epochs=1
    )
    train.run_experiment(config)
    assert train.run_experiment(config)["epochs_run"] == 1  # unchanged data: the finished run is reported
    (folder / "cat" / "003.png").rename(folder / "dog" / "003.png")
    (folder / "dog" / "105.png").unlink()
    with pytest.raises(ConfigError, match=r"changed since the run .* 1 file moved to another class \(e.g. cat/003.png"):
        train.run_experiment(config)
    with pytest.raises(ConfigError, match=r"1 file removed \(e.g. dog/105.png\)"):
        train.prepare(config)


def test_images_too_small_for_the_network_are_one_line_naming_the_fixes(tmp_path):
    folder = _image_folder(tmp_path / "imgs", size=8)
    config = train.ExperimentConfig(workdir=str(tmp_path / "run"), dataset=f"folder:{folder}", noise="none")
    with pytest.raises(
        ConfigError, match=r"8x8 images, too small for --architecture=mnist_cnn: .*--image_size=28.*--architecture=mlp"
    ):
        train.run_experiment(config)
    assert not (tmp_path / "run").exists()


def test_too_few_gradient_steps_are_named_with_the_fix(tmp_path):
    config = train.ExperimentConfig(workdir=str(tmp_path / "r"), epochs=30, batch_size=256, method="limit")
    message = train.too_few_steps(config, num_train=83, steps_per_epoch=1)
    assert "only 30 gradient steps" in message and f"--epochs={train.MIN_STEPS}" in message
    assert "--batch_size=32" in message  # what auto would have taken
    assert train.too_few_steps(config.replace(epochs=400), num_train=83, steps_per_epoch=2) is None
    # The default (auto) batch already is the small one: only the epochs are named.
    auto = train.too_few_steps(config.replace(batch_size=0), num_train=83, steps_per_epoch=3)
    assert "--batch_size=32 make 3 steps" in auto and ", or --batch_size" not in auto


@pytest.mark.parametrize(
    "num_train, batch", [(60_000, 256), (1000, 256), (512, 256), (511, 128), (364, 128), (114, 32), (20, 8), (1, 8)]
)
def test_the_auto_batch_keeps_the_papers_256_and_gives_limit_on_small_data_two_steps_an_epoch(num_train, batch):
    assert config_lib.auto_batch_size(num_train) == batch
    limit = train.ExperimentConfig(workdir="w", method="limit")
    assert limit.resolved_batch_size(num_train) == batch
    assert limit.replace(batch_size=100).resolved_batch_size(num_train) == 100
    assert limit.replace(method="ce").resolved_batch_size(num_train) == 256  # label-fitting methods keep 256


def test_a_small_table_trains_with_the_auto_batch_and_records_it(tmp_path):
    rng = np.random.default_rng(0)
    rows = ["a,b,label"] + [f"{rng.normal():.3f},{rng.normal():.3f},{k % 2}" for k in range(100)]
    table = tmp_path / "t.csv"
    table.write_text("\n".join(rows) + "\n")
    config = train.ExperimentConfig(
        workdir=str(tmp_path / "run"), dataset=f"csv:{table}", noise="none", epochs=2, patience=2, method="limit"
    )
    results = train.run_experiment(config)
    used = results["num_train_examples_used"]
    assert results["batch_size"] == config_lib.auto_batch_size(used) < 256
    assert (tmp_path / "run" / "metrics.csv").is_file()
