"""The Keras callbacks of the paper's protocol (used by :mod:`limit_tf.train`).

Order matters; the runner installs them as: :class:`EpochEvaluation`
(validation, the memorization metrics and the optional test monitor, from
one compiled inference function), :class:`NanGuard` (stops before anything
of a diverged epoch is saved, ``val_loss`` included), :class:`ProtocolState` (model selection, early stopping, the checkpoint and
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

from limit_tf import inference
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


def memorization_metrics(predicted: np.ndarray, observed: np.ndarray, clean: np.ndarray | None) -> dict[str, float]:
    """Training accuracy against the observed labels, and split into correct and corrupted examples.

    ``train_acc_observed`` (all examples, observed labels),
    ``train_acc_clean_subset`` (examples whose label is correct),
    ``train_acc_corrupted_subset`` (examples whose label is wrong, against that
    wrong label: the memorization of noise), and
    ``train_acc_corrupted_true`` (those examples against their true label).
    With ``clean=None`` (your own data, whose true labels nobody knows) only
    ``train_acc_observed``.
    """
    hit = predicted == observed
    out = {"train_acc_observed": float(hit.mean())}
    if clean is None:
        return out
    mask = observed != clean
    out["train_acc_clean_subset"] = float(hit[~mask].mean()) if (~mask).any() else math.nan
    out["train_acc_corrupted_subset"] = float(hit[mask].mean()) if mask.any() else math.nan
    out["train_acc_corrupted_true"] = float((predicted == clean)[mask].mean()) if mask.any() else math.nan
    return out


class EpochEvaluation(keras.callbacks.Callback):
    """Everything the protocol measures after an epoch, from one compiled inference function.

    The classifier runs in inference mode over the validation inputs (adds
    ``val_loss``, the cross-entropy against the validation labels, and
    ``val_accuracy``: model selection), the training inputs (the
    :func:`memorization_metrics`) and, when given, the clean test inputs
    (``test_accuracy_monitor``: for curves only, never for selection). One
    function serves all three: the classifier with its batch norms folded
    into the layers before them (``fold``; :mod:`limit_tf.inference`), with
    or without XLA as is faster on the machine (``jit=None``:
    :func:`limit_tf.inference.evaluation_settings`, which also gives the
    runner's batch size for these passes). It runs the network directly rather than
    through ``predict``/``evaluate``,
    so it works in any strategy's cross-replica context, including
    ``MultiWorkerMirroredStrategy`` where Keras' ``predict`` fails. Each
    ``*_inputs`` is a ``tf.data.Dataset`` of input batches, in the order of
    its labels; pass ``validation=None`` where the validation pass is done
    elsewhere (the multi-worker loop does it collectively).
    """

    def __init__(
        self,
        classifier: keras.Model,
        *,
        validation: tuple | None = None,
        train: tuple | None = None,
        test: tuple | None = None,
        jit: bool | None = None,
        fold: bool = True,
    ):
        super().__init__()
        self.classifier = classifier
        self.fold = fold
        self._inference = None
        self.validation = validation  # (inputs, labels)
        self.train = train  # (inputs, observed labels, clean labels or None)
        self.test = test  # (inputs, labels)
        self.jit = inference.evaluation_settings(())[0] if jit is None else jit
        self._fn = None

    def logits(self, inputs: tf.data.Dataset) -> np.ndarray:
        """The classifier's float32 logits over a dataset of input batches (its weights as they are now)."""
        if self._fn is None:
            self._fn = self._compile(self.jit)
        self._inference.sync()
        try:
            return np.concatenate([self._fn(x).numpy() for x in inputs])
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, NotImplementedError) as e:
            if not self.jit:
                raise
            logging.warning("XLA could not compile the evaluation (%s); evaluating without it.", str(e).split("\n")[0])
            self.jit, self._fn = False, self._compile(False)
            return self.logits(inputs)

    def _compile(self, jit: bool):
        if self._inference is None:
            self._inference = inference.FoldedInference(self.classifier, fold=self.fold)
        network = self._inference.model
        return tf.function(lambda x: tf.cast(network(x, training=False), tf.float32), jit_compile=jit)

    def on_epoch_end(self, epoch, logs=None):
        if self.validation is not None:
            inputs, labels = self.validation
            logits = self.logits(inputs).astype(np.float64)
            labels = np.asarray(labels)
            shifted = logits - logits.max(axis=1, keepdims=True)
            log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
            logs["val_accuracy"] = float(np.mean(logits.argmax(axis=1) == labels))
            logs["val_loss"] = float(-log_probs[np.arange(len(labels)), labels].mean())
        if self.train is not None:
            inputs, observed, clean = self.train
            predicted = self.logits(inputs).argmax(axis=1)
            logs.update(
                memorization_metrics(predicted, np.asarray(observed), None if clean is None else np.asarray(clean))
            )
        if self.test is not None:
            inputs, labels = self.test
            logs["test_accuracy_monitor"] = float(np.mean(self.logits(inputs).argmax(axis=1) == np.asarray(labels)))


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
      checkpoint: the run's (this worker's) :class:`TrainingCheckpoint`, or
        None where nothing is kept (a tuner trial: it selects and stops the
        same way, and KerasTuner keeps the best epoch's weights).
      state: the restored protocol state (:func:`initial_state` for a new run).
      patience: epochs without improvement before stopping.
      run: the work dir to mirror the state into (None on non-chief workers).
      monitor: the logged value to select on.
    """

    def __init__(
        self,
        checkpoint: TrainingCheckpoint | None,
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
            if self.checkpoint is not None:
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
        if self.checkpoint is not None:
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

    The epoch line has the main metrics, the best epoch so far and the time
    left: "ETA 2m30s to 4m30s" when the run stops after the first figure if
    validation does not improve (``patience``) and after the second at the
    latest (``epochs``); one figure when both are the same. The in-epoch
    line has the step, the running loss and the epoch's ETA.

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
        # The run ends after `patience_left` more epochs if validation stops improving, and after `left` at most.
        left = self.epochs - epoch - 1
        patience_left = min(left, max(self.selection.patience - (epoch - s["best_epoch"]), 0))
        eta = format_seconds(per_epoch * left)
        if patience_left < left:
            eta = f"{format_seconds(per_epoch * patience_left)} to {eta}"
        parts = [
            f"{key}={float(logs[key]):.4f}"
            for key in ("loss", "accuracy", "val_accuracy", "train_acc_corrupted_subset")
            if key in logs
        ]
        logging.info(
            "[%s] epoch %d/%d %s | best val_accuracy %.4f @ epoch %d | %.1fs/epoch, ETA %s",
            self.label,
            epoch + 1,
            self.epochs,
            " ".join(parts),
            s["best_value"],
            s["best_epoch"] + 1,
            per_epoch,
            eta,
        )


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
