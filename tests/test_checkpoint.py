"""The training checkpoint: complete, rotated, and robust to a damaged newest file."""

import keras
import numpy as np
import pytest

from limit_tf import LimitModel, models
from limit_tf.checkpoint import TrainingCheckpoint


def _model():
    model = LimitModel(models.build_model("mlp", 3, (4,)), models.build_model("mlp", 3, (4,)), beta=1.0)
    model.compile(keras.optimizers.Adam(1e-2))
    return model


def _train(model, rng, steps=1):
    for _ in range(steps):
        model.train_on_batch(rng.normal(size=(8, 4)).astype(np.float32), rng.integers(0, 3, 8))


def _snapshot(model):
    variables = model.weights + model.optimizer.variables + model.predictor_optimizer.variables
    return [np.asarray(v).copy() for v in variables]


def test_a_checkpoint_restores_everything_and_the_two_newest_are_kept(tmp_path, rng):
    model = _model()
    checkpoint = TrainingCheckpoint(model, tmp_path / "ck")
    states = {}
    for epoch in (1, 2, 3):
        _train(model, rng)
        if epoch == 2:
            checkpoint.remember_best()
            best = [w.copy() for w in model.get_weights()]
        states[epoch] = _snapshot(model)
        checkpoint.save(epoch, {"selection": {"last_epoch": epoch - 1}, "metrics": [{"epoch": epoch - 1}]})
    assert checkpoint.epochs() == [2, 3]
    fresh = _model()
    restored = TrainingCheckpoint(fresh, tmp_path / "ck")
    epoch, state = restored.restore_newest()
    assert epoch == 3 and state["selection"]["last_epoch"] == 2
    for a, b in zip(_snapshot(fresh), states[3], strict=True):
        np.testing.assert_array_equal(a, b)  # weights, BN statistics, both optimizers' moments and steps
    restored.load_best()
    for a, b in zip(fresh.get_weights(), best, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("damage", ["truncate_data", "delete_index", "garbage_index"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(tmp_path, rng, damage):
    model = _model()
    checkpoint = TrainingCheckpoint(model, tmp_path / "ck")
    snapshots = {}
    for epoch in (1, 2):
        _train(model, rng)
        snapshots[epoch] = _snapshot(model)
        checkpoint.save(epoch, {"selection": {"last_epoch": epoch - 1}, "metrics": []})
    data = next((tmp_path / "ck").glob("epoch-2.data-*"))
    index = tmp_path / "ck" / "epoch-2.index"
    if damage == "truncate_data":
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 3])
    elif damage == "delete_index":
        index.unlink()
    else:
        index.write_bytes(b"\x00" * 100)
    fresh = _model()
    epoch, state = TrainingCheckpoint(fresh, tmp_path / "ck").restore_newest()
    assert epoch == 1 and state["selection"]["last_epoch"] == 0
    for a, b in zip(_snapshot(fresh), snapshots[1], strict=True):
        np.testing.assert_array_equal(a, b)


def test_when_every_checkpoint_is_damaged_the_run_starts_over_from_its_initial_state(tmp_path, rng):
    model = _model()
    checkpoint = TrainingCheckpoint(model, tmp_path / "ck")
    _train(model, rng)
    checkpoint.save(1, {"selection": {}, "metrics": []})
    for f in (tmp_path / "ck").glob("epoch-1.data-*"):
        f.write_bytes(f.read_bytes()[:40])
    fresh = _model()
    initial = _snapshot(fresh)
    assert TrainingCheckpoint(fresh, tmp_path / "ck").restore_newest() == (0, None)
    for a, b in zip(_snapshot(fresh), initial, strict=True):
        np.testing.assert_array_equal(a, b)
    assert TrainingCheckpoint(_model(), tmp_path / "empty").restore_newest() == (0, None)
