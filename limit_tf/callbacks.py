"""The Keras callbacks of the paper's protocol (used by :mod:`limit_tf.train`).

Order matters; the runner installs them as: :class:`NanGuard` (stops before
anything of a diverged epoch is saved), the monitors that add metrics to the
epoch's logs (:class:`MemorizationMetrics`, :class:`TestAccuracyMonitor`),
:class:`ProtocolState` (model selection, early stopping, the checkpoint and
the work dir's ``metrics.csv`` / ``selection.json``), TensorBoard, and
:class:`ProgressLog`. They work under Keras' ``fit`` and under
:class:`limit_tf.loop.DistributedTrainer` alike.
"""

from __future__ import annotations

import math
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from limit_tf.checkpoint import TrainingCheckpoint
from limit_tf.workdir import RunDir


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class NanGuard(keras.callbacks.Callback):
    """Stops the run on a NaN/inf loss *before* anything is checkpointed for that epoch."""

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            if "loss" in key and not np.isfinite(float(value)):
                raise TrainingDivergedError(
                    f"{key} became {float(value)} in epoch {epoch + 1}; the run stopped and its last good "
                    "checkpoint is kept (rerun the same command to resume, or lower --learning_rate)."
                )


def predicted_classes(network: keras.Model, inputs: tf.data.Dataset, fn=None):
    """Argmax predictions over a dataset of inputs, without ``predict``.

    Runs the network directly in a ``tf.function`` (on this process only),
    so it works in any strategy's cross-replica context, including
    ``MultiWorkerMirroredStrategy`` where Keras' ``predict`` fails.

    Returns:
      ``(classes, fn)``: pass ``fn`` back in to reuse the traced function.
    """
    if fn is None:
        fn = tf.function(lambda x: tf.argmax(network(x, training=False), axis=-1))
    return np.concatenate([fn(x).numpy() for x in inputs]), fn


class MemorizationMetrics(keras.callbacks.Callback):
    """Training accuracy on correct vs corrupted examples, in inference mode.

    Adds to the epoch logs (so CSV and TensorBoard get them):
    ``train_acc_observed`` (all examples, observed labels),
    ``train_acc_clean_subset`` (examples whose label is correct),
    ``train_acc_corrupted_subset`` (examples whose label is wrong, against that
    wrong label: the memorization of noise), and
    ``train_acc_corrupted_true`` (those examples against their true label).
    With ``clean=None`` (your own data, whose true labels nobody knows) only
    ``train_acc_observed`` is logged.
    """

    def __init__(self, classifier: keras.Model, inputs, observed, clean=None):
        super().__init__()
        self.classifier = classifier
        self.inputs = inputs
        self.observed = np.asarray(observed)
        self.clean = None if clean is None else np.asarray(clean)
        self.mask = None if clean is None else self.observed != self.clean
        self._fn = None

    def on_epoch_end(self, epoch, logs=None):
        predicted, self._fn = predicted_classes(self.classifier, self.inputs, self._fn)
        hit = predicted == self.observed
        logs["train_acc_observed"] = float(hit.mean())
        if self.mask is None:
            return
        logs["train_acc_clean_subset"] = float(hit[~self.mask].mean()) if (~self.mask).any() else math.nan
        logs["train_acc_corrupted_subset"] = float(hit[self.mask].mean()) if self.mask.any() else math.nan
        logs["train_acc_corrupted_true"] = (
            float((predicted == self.clean)[self.mask].mean()) if self.mask.any() else math.nan
        )


class TestAccuracyMonitor(keras.callbacks.Callback):
    """Logs ``test_accuracy_monitor`` each epoch: for curves only, never for selection."""

    def __init__(self, classifier: keras.Model, inputs, labels):
        super().__init__()
        self.classifier = classifier
        self.inputs = inputs
        self.labels = np.asarray(labels)
        self._fn = None

    def on_epoch_end(self, epoch, logs=None):
        predicted, self._fn = predicted_classes(self.classifier, self.inputs, self._fn)
        logs["test_accuracy_monitor"] = float(np.mean(predicted == self.labels))


def initial_state() -> dict:
    """The protocol state of a run that has not finished an epoch."""
    return {
        "selection": {
            "best_value": None,
            "best_epoch": None,
            "last_epoch": -1,
            "stopped_early": False,
            "train_seconds": 0.0,
        },
        "metrics": [],
    }


class ProtocolState(keras.callbacks.Callback):
    """Model selection, early stopping and the epoch checkpoint, in one place.

    After every epoch: records the epoch's logs; if the monitored value
    improved, remembers the weights as the best; stops after ``patience``
    epochs without improvement; saves the checkpoint (model, optimizers,
    this state, best weights) and then, on the chief, rewrites
    ``metrics.csv`` and ``selection.json`` from the state, all atomically.
    A run resumed from the checkpoint therefore continues with exactly the
    state of its last finished epoch.

    Args:
      checkpoint: the run's (this worker's) :class:`TrainingCheckpoint`.
      state: the restored protocol state (:func:`initial_state` for a new run).
      patience: epochs without improvement before stopping.
      run: the work dir to mirror the state into (None on non-chief workers).
      monitor: the logged value to select on.
    """

    def __init__(
        self,
        checkpoint: TrainingCheckpoint,
        state: dict,
        patience: int,
        run: RunDir | None,
        monitor: str = "val_accuracy",
    ):
        super().__init__()
        self.checkpoint = checkpoint
        self.state = state
        self.patience = patience
        self.run = run
        self.monitor = monitor
        self._epoch_start = None

    @property
    def selection(self) -> dict:
        return self.state["selection"]

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        value = float(logs[self.monitor])
        s = self.selection
        if s["best_epoch"] is None or value > s["best_value"]:
            self.checkpoint.remember_best()
            s.update(best_value=value, best_epoch=epoch)
        s["last_epoch"] = epoch
        s["train_seconds"] += time.time() - self._epoch_start
        if epoch - s["best_epoch"] >= self.patience:
            s["stopped_early"] = True
            self.model.stop_training = True
        logs[f"best_{self.monitor}"] = s["best_value"]
        row = {"epoch": epoch, **{k: _as_float(v) for k, v in logs.items()}}
        self.state["metrics"] = [r for r in self.state["metrics"] if r["epoch"] < epoch] + [row]
        self.checkpoint.save(epoch + 1, self.state)
        self.mirror()

    def mirror(self) -> None:
        """Writes ``metrics.csv`` and ``selection.json`` from the state (chief only)."""
        if self.run is not None:
            self.run.write_metrics(self.state["metrics"])
            self.run.write_selection(self.selection)


def _as_float(value) -> float:
    return float(np.asarray(value))


class ProgressLog(keras.callbacks.Callback):
    """Progress lines: within long epochs (every ``interval`` seconds) and one per epoch.

    The epoch line has the main metrics, the best epoch so far and an ETA;
    the in-epoch line the step, the running loss and the epoch's ETA.

    Args:
      selection: the :class:`ProtocolState` (for the best epoch and patience).
      epochs: the run's maximum epochs.
      steps: training steps per epoch.
      label: a name for the run in the lines.
      interval: seconds between in-epoch lines.
      clock: the time source (seconds).
    """

    def __init__(
        self,
        selection: ProtocolState,
        epochs: int,
        steps: int,
        label: str,
        interval: float = 15.0,
        clock=time.monotonic,
    ):
        super().__init__()
        self.clock = clock
        self.selection = selection
        self.epochs = epochs
        self.steps = steps
        self.label = label
        self.interval = interval
        self._times = []
        self._start = None
        self._last_line = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = self._last_line = self.clock()
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        now = self.clock()
        if now - self._last_line < self.interval:
            return
        self._last_line = now
        done = batch + 1
        elapsed = now - self._start
        loss = f" loss={float(np.asarray(logs['loss'])):.4f}" if logs and "loss" in logs else ""
        logging.info(
            "[%s] epoch %d/%d: step %d/%d (%d%%)%s, %s elapsed, epoch ETA %s",
            self.label,
            self._epoch + 1,
            self.epochs,
            done,
            self.steps,
            100 * done // max(self.steps, 1),
            loss,
            format_seconds(elapsed),
            format_seconds(elapsed / done * (self.steps - done)),
        )

    def on_epoch_end(self, epoch, logs=None):
        self._times.append(self.clock() - self._start)
        per_epoch = float(np.mean(self._times[-5:]))
        s = self.selection.selection
        left = self.epochs - epoch - 1
        patience_left = self.selection.patience - (epoch - s["best_epoch"])
        eta = per_epoch * min(left, max(patience_left, 0))
        parts = [
            f"{key}={float(logs[key]):.4f}"
            for key in ("loss", "accuracy", "val_accuracy", "train_acc_corrupted_subset")
            if key in logs
        ]
        logging.info(
            "[%s] epoch %d/%d %s | best val_accuracy %.4f @ epoch %d | %.1fs/epoch, ETA <= %s",
            self.label,
            epoch + 1,
            self.epochs,
            " ".join(parts),
            s["best_value"],
            s["best_epoch"] + 1,
            per_epoch,
            format_seconds(eta),
        )


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
