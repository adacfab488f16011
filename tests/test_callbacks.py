"""The protocol's callbacks, driven by hand."""

import json

import keras
import numpy as np
import pytest

from limit_tf import callbacks, models, workdir
from limit_tf.checkpoint import TrainingCheckpoint


def _model():
    model = models.build_model("mlp", 3, (4,))
    model.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _drive(protocol, values, model):
    protocol.set_model(model)
    for epoch, value in enumerate(values):
        protocol.on_epoch_begin(epoch)
        model.layers[-1].bias.assign(np.full(3, float(epoch), np.float32))  # the weights "of" this epoch
        logs = {"loss": 1.0 / (epoch + 1), "val_accuracy": value}
        protocol.on_epoch_end(epoch, logs)
        if model.stop_training:
            return logs
    return logs


def test_protocol_state_selects_stops_checkpoints_and_mirrors(tmp_path):
    model = _model()
    run = workdir.RunDir(tmp_path)
    checkpoint = TrainingCheckpoint(model, run.checkpoint_dir)
    protocol = callbacks.ProtocolState(checkpoint, callbacks.initial_state(), patience=2, run=run)
    logs = _drive(protocol, [0.1, 0.5, 0.5, 0.4, 0.9], model)
    # Epoch 1 is the best (ties keep the first); epochs 2 and 3 do not improve: stop after epoch 3.
    assert model.stop_training and logs["best_val_accuracy"] == 0.5
    selection = run.selection()
    assert selection["best_epoch"] == 1 and selection["last_epoch"] == 3 and selection["stopped_early"]
    assert [r["epoch"] for r in run.metrics()] == [0, 1, 2, 3]
    assert run.metrics()[1]["val_accuracy"] == 0.5
    checkpoint.load_best()
    np.testing.assert_array_equal(model.layers[-1].bias.numpy(), [1.0, 1.0, 1.0])  # epoch 1's weights
    fresh = _model()
    epoch, state = TrainingCheckpoint(fresh, run.checkpoint_dir).restore_newest()
    assert epoch == 4 and state == json.loads(json.dumps(protocol.state))
    np.testing.assert_array_equal(fresh.layers[-1].bias.numpy(), [3.0, 3.0, 3.0])  # the last epoch's


def test_a_worker_keeps_its_state_without_writing_the_work_dir(tmp_path):
    model = _model()
    protocol = callbacks.ProtocolState(
        TrainingCheckpoint(model, tmp_path / "ck"), callbacks.initial_state(), 5, run=None
    )
    _drive(protocol, [0.2, 0.3], model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
    assert protocol.selection["best_epoch"] == 1


def test_nan_guard_names_the_loss_and_the_epoch():
    with pytest.raises(callbacks.TrainingDivergedError, match="val_loss became inf in epoch 4"):
        callbacks.NanGuard().on_epoch_end(3, {"loss": 0.5, "val_loss": float("inf")})
    callbacks.NanGuard().on_epoch_end(3, {"loss": 0.5, "accuracy": float("nan")})  # only losses are checked


@pytest.mark.parametrize("jit", [True, False])
def test_one_evaluation_pass_gives_validation_memorization_and_test_metrics(jit):
    import tensorflow as tf

    inputs = keras.Input((2,))
    net = keras.Model(inputs, 2.0 * inputs)  # logits: twice the input
    x = np.eye(2, dtype=np.float32)[[0, 1, 0, 1]]
    batches = tf.data.Dataset.from_tensor_slices(x).batch(3)  # a partial last batch too
    evaluation = callbacks.EpochEvaluation(
        net,
        validation=(batches, [0, 1, 1, 1]),
        train=(batches, [0, 1, 1, 0], [0, 1, 0, 1]),
        test=(batches, [0, 0, 0, 1]),
        jit=jit,
    )
    logs = {}
    evaluation.on_epoch_end(0, logs)
    right, wrong = -np.log(np.exp(2) / (np.exp(2) + 1)), -np.log(1 / (np.exp(2) + 1))
    # Predictions 0,1,0,1. Validation: 3 of 4 right. Training: observed 0,1,1,0 (the last two corrupted).
    assert logs == pytest.approx(
        {
            "val_accuracy": 0.75,
            "val_loss": (3 * right + wrong) / 4,
            "train_acc_observed": 0.5,
            "train_acc_clean_subset": 1.0,
            "train_acc_corrupted_subset": 0.0,
            "train_acc_corrupted_true": 1.0,
            "test_accuracy_monitor": 0.75,
        }
    )
    # Your own data: nobody knows which labels are wrong, so no subsets; and no validation pass here.
    unknown = callbacks.EpochEvaluation(net, train=(batches, [0, 1, 1, 0], None), jit=jit)
    logs = {}
    unknown.on_epoch_end(0, logs)
    assert logs == {"train_acc_observed": 0.5}


def test_the_evaluation_folds_batch_norm_and_follows_the_weights(rng):
    """Folded (the default) and unfolded evaluation log the same values, epoch after epoch."""
    import tensorflow as tf

    net = models.build_model("mnist_cnn", 10, (28, 28, 1))
    x = rng.normal(size=(10, 28, 28, 1)).astype(np.float32)
    observed = rng.integers(0, 10, 10)
    clean = np.where(np.arange(10) < 4, (observed + 1) % 10, observed)  # 4 corrupted labels
    batches = tf.data.Dataset.from_tensor_slices(x).batch(4)
    splits = {"validation": (batches, observed), "train": (batches, observed, clean), "test": (batches, clean)}
    folded = callbacks.EpochEvaluation(net, **splits)
    plain = callbacks.EpochEvaluation(net, **splits, fold=False)
    for epoch in range(3):
        logs, expected = {}, {}
        folded.on_epoch_end(epoch, logs)
        plain.on_epoch_end(epoch, expected)
        assert logs == pytest.approx(expected, rel=1e-5) and len(logs) == 7
        # What a training epoch changes: the weights and the batch-norm statistics.
        for variable in net.weights:
            variable.assign(variable * rng.uniform(0.5, 1.5, variable.shape).astype(np.float32))
    assert folded._inference.folded == 4 and plain._inference.folded == 0


def test_progress_lines_within_and_after_an_epoch(caplog):
    model = _model()
    protocol = callbacks.ProtocolState(
        TrainingCheckpoint(model, "/nonexistent-unused"), callbacks.initial_state(), patience=5, run=None
    )
    protocol.selection.update(best_value=0.5, best_epoch=0)
    clock = iter([0.0, 5.0, 12.0, 13.0, 30.0, 100.0, 130.0])
    progress = callbacks.ProgressLog(protocol, 10, 100, "ce run", interval=10.0, clock=lambda: next(clock))
    with caplog.at_level("INFO"):
        progress.on_epoch_begin(0)  # t = 0
        progress.on_train_batch_end(9, {"loss": 2.0})  # t = 5: too soon for a line
        progress.on_train_batch_end(39, {"loss": 1.5})  # t = 12: a line
        progress.on_train_batch_end(40, {"loss": 1.4})  # t = 13: too soon again
        progress.on_epoch_end(0, {"loss": 1.0, "val_accuracy": 0.5})  # t = 30
        protocol.selection.update(best_epoch=7)
        progress.on_epoch_begin(7)  # t = 100
        progress.on_epoch_end(7, {"loss": 0.5, "val_accuracy": 0.6})  # t = 130
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "[ce run] epoch 1/10: step 40/100 (40%) loss=1.5000, 12s elapsed, epoch ETA 18s"
    assert lines[1].startswith(
        "[ce run] epoch 1/10 loss=1.0000 val_accuracy=0.5000 | best val_accuracy 0.5000 @ epoch 1"
    )
    # 9 epochs left at most (--epochs=10), 5 if validation does not improve (--patience=5).
    assert lines[1].endswith("30.0s/epoch, ETA 2m30s to 4m30s")
    # Epoch 8 of 10 is the best: both limits are the 2 epochs left, one figure.
    assert lines[2].endswith("30.0s/epoch, ETA 1m00s") and len(lines) == 3


def test_the_evaluation_falls_back_from_xla_with_a_warning(caplog):
    """A network with an op XLA cannot compile (a host callback here) is evaluated without XLA."""
    import tensorflow as tf

    class OnTheHost(keras.layers.Layer):
        def call(self, x):
            y = tf.numpy_function(lambda a: 2.0 * a, [x], tf.float32)
            y.set_shape(x.shape)
            return y

    inputs = keras.Input((2,))
    net = keras.Model(inputs, OnTheHost()(inputs))
    x = np.eye(2, dtype=np.float32)[[0, 1, 0, 1]]
    evaluation = callbacks.EpochEvaluation(
        net, train=(tf.data.Dataset.from_tensor_slices(x).batch(3), [0, 1, 1, 0], None), jit=True
    )
    logs = {}
    with caplog.at_level("WARNING"):
        evaluation.on_epoch_end(0, logs)
    assert logs == {"train_acc_observed": 0.5} and evaluation.jit is False
    assert any("XLA could not compile the evaluation" in r.getMessage() for r in caplog.records)
