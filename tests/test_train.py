import json

import h5py
import keras
import numpy as np
import pytest

from limit_tf import train
from limit_tf.config import ConfigError
from tests.conftest import tiny_config, write_fake_mnist


@pytest.fixture
def fake_data(tmp_path):
    write_fake_mnist(tmp_path / "data", n_train=500, n_test=100)
    return str(tmp_path / "data")


def _config(tmp_path, fake_data, workdir=None, **changes):
    settings = {"epochs": 4, "patience": 10, "deterministic": True, **changes}
    return tiny_config(workdir or tmp_path / "run", fake_data, **settings)


def test_run_writes_everything(tmp_path, fake_data):
    config = _config(tmp_path, fake_data, method="limit", predictor="gaussian", beta=1.0, track_test_accuracy=True)
    results = train.run_experiment(config)
    workdir = tmp_path / "run"
    for name in ("config.json", "labels.npz", "metrics.csv", "best.weights.h5", "selection.json", "results.json"):
        assert (workdir / name).is_file(), name
    assert any((workdir / "tensorboard").rglob("events.out.tfevents*"))
    assert not (workdir / "backup").exists()
    for key in (
        "test_accuracy",
        "best_val_accuracy",
        "best_epoch",
        "epochs_run",
        "realized_noise_rate",
        "train_wall_time_s",
        "versions",
    ):
        assert key in results
    assert results["epochs_run"] == 4 and 1 <= results["best_epoch"] <= 4
    assert results["versions"]["keras"] == keras.__version__
    labels = np.load(workdir / "labels.npz")
    assert labels["train_noise_mask"].mean() == pytest.approx(results["realized_noise_rate"])
    np.testing.assert_array_equal(labels["train_noise_mask"], labels["train_labels"] != labels["train_clean_labels"])
    metrics = train.read_metrics(workdir)
    assert [m["epoch"] for m in metrics] == [0, 1, 2, 3]
    for key in (
        "train_acc_clean_subset",
        "train_acc_corrupted_subset",
        "train_acc_observed",
        "val_accuracy",
        "q_loss",
        "test_accuracy_monitor",
    ):
        assert key in metrics[0], key
    best = max(metrics, key=lambda m: m["val_accuracy"])
    assert results["best_epoch"] == best["epoch"] + 1
    assert results["best_val_accuracy"] == pytest.approx(best["val_accuracy"])


def test_early_stopping_by_patience(tmp_path, fake_data):
    results = train.run_experiment(_config(tmp_path, fake_data, method="ce", epochs=30, patience=2, learning_rate=1e-5))
    assert results["stopped_early"]
    assert results["epochs_run"] == results["best_epoch"] + 2


def test_finished_run_is_reported_not_rerun(tmp_path, fake_data):
    config = _config(tmp_path, fake_data, method="ce", epochs=2)
    first = train.run_experiment(config)

    class MustNotTrain(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            raise AssertionError("a finished run was trained again")

    assert train.run_experiment(config, callbacks=[MustNotTrain()]) == first


def test_other_experiment_in_same_workdir_is_refused(tmp_path, fake_data):
    train.run_experiment(_config(tmp_path, fake_data, method="ce", epochs=1))
    (tmp_path / "run" / "results.json").unlink()
    with pytest.raises(ConfigError, match="holds a different experiment.*beta"):
        train.prepare(_config(tmp_path, fake_data, method="ce", epochs=1, beta=2.0))


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at_epoch:
            raise KeyboardInterrupt("simulated kill")


@pytest.mark.parametrize("method", ["ce", "limit"])
def test_resume_after_interruption_matches_uninterrupted_run(tmp_path, fake_data, method):
    extra = dict(predictor="laplace", beta=1.0, sample=True, sigma_q=0.1) if method == "limit" else {}
    reference = train.run_experiment(
        _config(tmp_path, fake_data, method=method, workdir=str(tmp_path / "ref"), **extra)
    )
    config = _config(tmp_path, fake_data, method=method, **extra)
    with pytest.raises(KeyboardInterrupt):
        train.run_experiment(config, callbacks=[_Interrupt(at_epoch=1)])
    assert not (tmp_path / "run" / "results.json").exists()
    assert (tmp_path / "run" / "backup").is_dir()
    resumed = train.run_experiment(config)
    for key in ("test_accuracy", "best_val_accuracy", "best_epoch", "epochs_run"):
        assert resumed[key] == reference[key], key
    ref_metrics = train.read_metrics(tmp_path / "ref")
    run_metrics = train.read_metrics(tmp_path / "run")
    assert [m["epoch"] for m in run_metrics] == [0, 1, 2, 3]  # no duplicated epoch rows
    for a, b in zip(ref_metrics, run_metrics, strict=True):
        assert a["val_accuracy"] == b["val_accuracy"] and a["loss"] == pytest.approx(b["loss"], rel=1e-6)


def test_nan_loss_stops_with_last_good_checkpoint(tmp_path, fake_data):
    class Poison(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                weight = self.model.trainable_variables[-1]  # the logits bias: NaN reaches the loss
                weight.assign(np.full(weight.shape, np.nan, np.float32))

    config = _config(tmp_path, fake_data, method="ce", epochs=5)
    with pytest.raises(train.TrainingDivergedError, match="loss became nan in epoch 3"):
        train.run_experiment(config, callbacks=[Poison()])
    workdir = tmp_path / "run"
    assert json.loads((workdir / "backup" / "training_metadata.json").read_text())["epoch"] == 2
    assert json.loads((workdir / "selection.json").read_text())["last_epoch"] == 1
    with h5py.File(workdir / "best.weights.h5") as f:
        arrays = []
        f.visititems(lambda name, obj: arrays.append(obj[()]) if isinstance(obj, h5py.Dataset) else None)
    assert arrays and all(np.all(np.isfinite(a)) for a in arrays)  # the best weights are finite


def test_init_from_ce_run(tmp_path, fake_data):
    ce = train.run_experiment(_config(tmp_path, fake_data, method="ce", epochs=1, workdir=str(tmp_path / "ce")))
    assert ce["epochs_run"] == 1
    config = _config(
        tmp_path, fake_data, method="limit", predictor="laplace", beta=1.0, epochs=1, init_from=str(tmp_path / "ce")
    )
    assert train.run_experiment(config)["epochs_run"] == 1
