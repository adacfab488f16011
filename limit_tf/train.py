"""Runs one experiment in the paper's protocol, from an :class:`ExperimentConfig`.

Protocol: train; after every epoch measure (noisy, unless
``clean_validation``) validation accuracy; keep the weights of the best epoch;
stop when it has not improved for ``patience`` epochs; restore the best
weights and evaluate on the clean test set.

The work dir receives::

    config.json        the config (a rerun with a different one is refused)
    labels.npz         noisy and clean labels, corruption masks, source indices
    metrics.csv        per-epoch metrics, incl. training accuracy on the
                       examples whose labels are correct / corrupted
    tensorboard/       TensorBoard logs
    best.weights.h5    weights of the best validation epoch
    selection.json     model-selection state (best epoch, stop flag, time)
    backup/            BackupAndRestore state while the run is unfinished
    results.json       written last: test accuracy, best epoch, versions, ...

A run killed at any point (even with SIGKILL) and started again with the same
config resumes from its last finished epoch; in ``deterministic`` mode it
ends with the same results as an uninterrupted run. A finished run is not
run again: its results are returned.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import platform
import shutil
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from absl import logging

import limit_tf
from limit_tf import data as data_lib
from limit_tf import distribute, loop, methods
from limit_tf.config import BEST_WEIGHTS, CONFIG, RESULTS, ConfigError, ExperimentConfig

SELECTION = "selection.json"
METRICS_CSV = "metrics.csv"
LABELS = "labels.npz"
BACKUP = "backup"


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def _write_json_atomic(path: Path, value) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True, default=_json_default))
    os.replace(tmp, path)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value)}")


def library_versions() -> dict[str, str]:
    import tensorflow_datasets as tfds

    return {
        "limit_tf": limit_tf.__version__,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "tensorflow_datasets": tfds.__version__,
    }


# --------------------------------------------------------------------------
# Callbacks of the protocol.


class NanGuard(keras.callbacks.Callback):
    """Stops the run on a NaN/inf loss *before* anything is checkpointed for that epoch."""

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            if "loss" in key and not np.isfinite(float(value)):
                raise TrainingDivergedError(
                    f"{key} became {float(value)} in epoch {epoch + 1}; the run stopped and its last good "
                    "checkpoint is kept (rerun the same command to resume, or lower --learning_rate)."
                )


def predicted_classes(classifier: keras.Model, inputs: tf.data.Dataset, fn=None):
    """Argmax predictions over a dataset of inputs, without ``predict``.

    Runs the classifier directly in a ``tf.function`` (on this process only),
    so it works in any strategy's cross-replica context, including
    ``MultiWorkerMirroredStrategy`` where Keras' ``predict`` fails.

    Returns:
      ``(classes, fn)``: pass ``fn`` back in to reuse the traced function.
    """
    if fn is None:
        fn = tf.function(lambda x: tf.argmax(classifier(x, training=False), axis=-1))
    return np.concatenate([fn(x).numpy() for x in inputs]), fn


class MemorizationMetrics(keras.callbacks.Callback):
    """Training accuracy on correct vs corrupted examples, in inference mode.

    Adds to the epoch logs (so CSV and TensorBoard get them):
    ``train_acc_observed`` (all examples, observed labels),
    ``train_acc_clean_subset`` (examples whose label is correct),
    ``train_acc_corrupted_subset`` (examples whose label is wrong, against that
    wrong label: the memorization of noise), and
    ``train_acc_corrupted_true`` (those examples against their true label).
    """

    def __init__(self, classifier: keras.Model, inputs, split: data_lib.Split):
        super().__init__()
        self.classifier = classifier
        self.inputs = inputs
        self.observed = split.labels
        self.clean = split.clean_labels
        self.mask = split.noise_mask
        self._fn = None

    def on_epoch_end(self, epoch, logs=None):
        predicted, self._fn = predicted_classes(self.classifier, self.inputs, self._fn)
        hit = predicted == self.observed
        logs["train_acc_observed"] = float(hit.mean())
        logs["train_acc_clean_subset"] = float(hit[~self.mask].mean()) if (~self.mask).any() else float("nan")
        logs["train_acc_corrupted_subset"] = float(hit[self.mask].mean()) if self.mask.any() else float("nan")
        logs["train_acc_corrupted_true"] = (
            float((predicted == self.clean)[self.mask].mean()) if self.mask.any() else float("nan")
        )


class TestAccuracyMonitor(keras.callbacks.Callback):
    """Logs ``test_accuracy_monitor`` each epoch: for curves only, never for selection."""

    def __init__(self, classifier: keras.Model, inputs, labels):
        super().__init__()
        self.classifier = classifier
        self.inputs = inputs
        self.labels = labels
        self._fn = None

    def on_epoch_end(self, epoch, logs=None):
        predicted, self._fn = predicted_classes(self.classifier, self.inputs, self._fn)
        logs["test_accuracy_monitor"] = float(np.mean(predicted == self.labels))


class BestEpochSelection(keras.callbacks.Callback):
    """Keeps the best-validation weights and stops after ``patience`` epochs without improvement.

    Unlike ``ModelCheckpoint`` and ``EarlyStopping``, its state lives in the
    work dir, so a resumed run neither forgets its best epoch nor restarts
    its patience. The weights are written before the state (both atomically).
    """

    def __init__(self, workdir: Path, patience: int, monitor: str = "val_accuracy"):
        super().__init__()
        self.workdir = workdir
        self.patience = patience
        self.monitor = monitor
        self.state = read_selection(workdir)
        self._epoch_start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        value = float(logs[self.monitor])
        state = self.state
        if state["best_epoch"] is None or value > state["best_value"]:
            tmp = self.workdir / ("tmp." + BEST_WEIGHTS)
            self.model.save_weights(tmp)
            os.replace(tmp, self.workdir / BEST_WEIGHTS)
            state.update(best_value=value, best_epoch=epoch)
        state["last_epoch"] = epoch
        state["train_seconds"] += time.time() - self._epoch_start
        if epoch - state["best_epoch"] >= self.patience:
            state["stopped_early"] = True
            self.model.stop_training = True
        _write_json_atomic(self.workdir / SELECTION, state)
        logs[f"best_{self.monitor}"] = state["best_value"]


class ProgressLog(keras.callbacks.Callback):
    """One line per epoch: the main metrics, the best epoch so far, and an ETA."""

    def __init__(self, selection: BestEpochSelection, epochs: int, label: str):
        super().__init__()
        self.selection = selection
        self.epochs = epochs
        self.label = label
        self._times = []
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        self._times.append(time.time() - self._start)
        per_epoch = float(np.mean(self._times[-5:]))
        state = self.selection.state
        left = self.epochs - epoch - 1
        patience_left = self.selection.patience - (epoch - state["best_epoch"])
        eta = per_epoch * min(left, max(patience_left, 0))
        parts = [
            f"{key}={logs[key]:.4f}"
            for key in ("loss", "accuracy", "val_accuracy", "train_acc_corrupted_subset")
            if key in logs
        ]
        logging.info(
            "[%s] epoch %d/%d %s | best val_accuracy %.4f @ epoch %d | %.1fs/epoch, ETA <= %s",
            self.label,
            epoch + 1,
            self.epochs,
            " ".join(parts),
            state["best_value"],
            state["best_epoch"] + 1,
            per_epoch,
            _format_seconds(eta),
        )


def _format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def read_selection(workdir: Path) -> dict:
    path = Path(workdir) / SELECTION
    if path.is_file():
        return json.loads(path.read_text())
    return {"best_value": None, "best_epoch": None, "last_epoch": -1, "stopped_early": False, "train_seconds": 0.0}


def _resume_epoch(workdir: Path) -> int:
    """The epoch BackupAndRestore will resume at (0 for a fresh run)."""
    for name in ("training_metadata.json", "training_metadata.json.bkp"):
        path = workdir / BACKUP / name
        if path.is_file():
            try:
                return int(json.loads(path.read_text())["epoch"])
            except (ValueError, KeyError):
                continue
    return 0


# --------------------------------------------------------------------------
# The run.


def load_data(config: ExperimentConfig) -> data_lib.NoisyDataset:
    """The config's noisy dataset (split, subset and noise fixed by ``noise_seed``)."""
    return data_lib.load_noisy_dataset(
        config.dataset,
        data_dir=config.data_dir,
        num_train_examples=config.num_train_examples,
        noise=config.noise,
        noise_rate=config.noise_rate,
        clean_validation=config.clean_validation,
        seed=config.noise_seed,
        source=config.data_source,
        allow_download=config.allow_download,
    )


def prepare(config: ExperimentConfig) -> data_lib.NoisyDataset:
    """Validates the config and loads the data; touches nothing on disk.

    Raises:
      ConfigError: a bad setting, the data not found offline, or a work dir
        that holds a different experiment.
    """
    config.validate()
    workdir = Path(config.workdir)
    existing = workdir / CONFIG
    if existing.is_file():
        previous = ExperimentConfig.from_dict(json.loads(existing.read_text()))
        if previous != config:
            changed = sorted(k for k, v in vars(config).items() if getattr(previous, k) != v)
            raise ConfigError(
                f"--workdir={config.workdir!r} holds a different experiment (differs in: {', '.join(changed)}); "
                "use a new work dir."
            )
    try:
        return load_data(config)
    except data_lib.DataNotFoundError as e:
        raise ConfigError(f"--dataset={config.dataset!r}: {e}") from None
    except ValueError as e:
        raise ConfigError(str(e)) from None


def finished_results(workdir: str | os.PathLike) -> dict | None:
    path = Path(workdir) / RESULTS
    return json.loads(path.read_text()) if path.is_file() else None


def run_experiment(config: ExperimentConfig, *, callbacks=(), dataset: data_lib.NoisyDataset | None = None) -> dict:
    """Runs (or resumes, or reports) one experiment; returns its results.

    Args:
      config: the experiment.
      callbacks: extra Keras callbacks (tests use them to interrupt a run).
      dataset: the already loaded data of ``config`` (skips loading).
    """
    if config.strategy == "multi_worker":
        return _run_multi_worker(config, list(callbacks), dataset)
    done = finished_results(config.workdir)
    if done is not None:
        config.validate()
        logging.info(
            "%s is finished (test accuracy %.4f); not running it again.", config.workdir, done["test_accuracy"]
        )
        return done
    dataset = dataset if dataset is not None else prepare(config)
    workdir = Path(config.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    _write_json_atomic(workdir / CONFIG, json.loads(config.to_json()))
    _save_labels(workdir / LABELS, dataset)

    strategy = distribute.get_strategy(config.strategy, config.devices)
    model = _build_model(config, dataset, strategy)
    selection = BestEpochSelection(workdir, config.patience)
    state = selection.state
    start_epoch = _resume_epoch(workdir)
    training_done = state["stopped_early"] or state["last_epoch"] + 1 >= config.epochs
    if not training_done:
        if start_epoch:
            logging.info("resuming %s at epoch %d", workdir, start_epoch + 1)
        _fit(model, config, dataset, workdir, selection, start_epoch, list(callbacks))
    return _finish(model, config, dataset, workdir)


def _build_model(config: ExperimentConfig, dataset, strategy) -> keras.Model:
    """Seeds (and, with ``deterministic``, fixes op order), then builds the method under the strategy."""
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    with strategy.scope():
        return methods.build_method(_method_context(config, dataset))


def _method_context(config: ExperimentConfig, dataset: data_lib.NoisyDataset) -> methods.MethodContext:
    init = str(Path(config.init_from) / BEST_WEIGHTS) if config.init_from else None
    return methods.MethodContext(
        config=config,
        num_classes=dataset.num_classes,
        input_shape=dataset.input_shape,
        init_weights=init,
        train_inputs=data_lib.to_tf_dataset(dataset, "train", batch_size=1024).map(lambda x, y: x),
    )


def _protocol_callbacks(model, config, dataset, workdir: Path, selection) -> list:
    """The protocol's callbacks that write the work dir (the chief's, under multi_worker)."""
    train_eval = data_lib.to_tf_dataset(dataset, "train", batch_size=1024).map(lambda x, y: x)
    label = f"{config.method} {Path(config.workdir).name}"
    classifier = methods.classifier_of(model)
    monitors = [MemorizationMetrics(classifier, train_eval, dataset.train)]
    if config.track_test_accuracy:
        test_inputs = data_lib.to_tf_dataset(dataset, "test", batch_size=1024).map(lambda x, y: x)
        monitors.append(TestAccuracyMonitor(classifier, test_inputs, dataset.test.labels))
    return [
        NanGuard(),
        *monitors,
        selection,
        keras.callbacks.CSVLogger(str(workdir / METRICS_CSV), append=True),
        keras.callbacks.TensorBoard(str(workdir / "tensorboard")),
        ProgressLog(selection, config.epochs, label),
    ]


def _fit(model, config, dataset, workdir: Path, selection, start_epoch: int, extra_callbacks: list) -> None:
    train, steps = data_lib.training_stream(
        dataset, batch_size=config.batch_size, seed=config.seed, first_epoch=start_epoch, last_epoch=config.epochs
    )
    validation = data_lib.to_tf_dataset(dataset, "validation", batch_size=1024)
    callbacks = [
        *_protocol_callbacks(model, config, dataset, workdir, selection),
        *extra_callbacks,
        # Last: it saves the epoch only after everything above has succeeded.
        keras.callbacks.BackupAndRestore(str(workdir / BACKUP), delete_checkpoint=False),
    ]
    model.fit(
        train,
        epochs=config.epochs,
        steps_per_epoch=steps,
        validation_data=validation,
        callbacks=callbacks,
        shuffle=False,  # the stream is already shuffled, per epoch
        verbose=0,
    )


def _finish(model, config, dataset, workdir: Path) -> dict:
    state = read_selection(workdir)
    model.load_weights(workdir / BEST_WEIGHTS)
    test = data_lib.to_tf_dataset(dataset, "test", batch_size=1024)
    test_logs = model.evaluate(test, verbose=0, return_dict=True)
    results = _results(config, dataset, state, test_logs)
    _write_results(workdir, results)
    shutil.rmtree(workdir / BACKUP, ignore_errors=True)
    return results


def _results(config, dataset, state: dict, test_logs: dict) -> dict:
    return {
        "test_accuracy": float(test_logs["accuracy"]),
        "test_loss": float(test_logs["loss"]),
        "best_val_accuracy": state["best_value"],
        "best_epoch": state["best_epoch"] + 1,
        "epochs_run": state["last_epoch"] + 1,
        "stopped_early": state["stopped_early"],
        "realized_noise_rate": dataset.realized_noise_rate,
        "validation_noise_rate": dataset.validation.noise_rate,
        "num_train_examples": len(dataset.train),
        "train_wall_time_s": state["train_seconds"],
        "versions": library_versions(),
        "config": json.loads(config.to_json()),
    }


def _write_results(workdir: Path, results: dict) -> None:
    _dedupe_metrics_csv(workdir / METRICS_CSV)
    _write_json_atomic(workdir / RESULTS, results)
    logging.info(
        "[%s] test accuracy %.4f at best epoch %d (val %.4f); results in %s",
        results["config"]["method"],
        results["test_accuracy"],
        results["best_epoch"],
        results["best_val_accuracy"],
        workdir / RESULTS,
    )


# --------------------------------------------------------------------------
# Several machines: MultiWorkerMirroredStrategy through limit_tf.loop.


def _run_multi_worker(config: ExperimentConfig, extra_callbacks: list, dataset) -> dict:
    """The protocol under ``MultiWorkerMirroredStrategy`` (every worker runs this).

    The chief (task 0) writes the work dir as a single-process run does. The
    other workers keep their selection state and best weights under
    ``<workdir>/workers/<task>/`` and their checkpoints under
    ``<workdir>/backup/workers/<task>/`` (on their own disk if the work dir
    is not shared), and delete them when the run ends. Decisions (stop,
    resume epoch, finished) are the chief's, broadcast to all.
    """
    strategy = distribute.get_strategy("multi_worker")
    chief = loop.is_chief(strategy)
    workdir = Path(config.workdir)
    dataset = dataset if dataset is not None else prepare(config)
    model = _build_model(config, dataset, strategy)
    trainer = loop.DistributedTrainer(model, strategy)
    done = finished_results(workdir) if chief else None
    if trainer.broadcast(int(done is not None)):
        logging.info("%s is finished; not running it again.", workdir)
        return done if chief else (finished_results(workdir) or {})
    own = workdir if chief else workdir / "workers" / loop.task_name(strategy)
    own.mkdir(parents=True, exist_ok=True)
    if chief:
        _write_json_atomic(workdir / CONFIG, json.loads(config.to_json()))
        _save_labels(workdir / LABELS, dataset)
    start_epoch = trainer.restore(workdir / BACKUP)
    selection = BestEpochSelection(own, config.patience)
    state = selection.state
    training_done = trainer.broadcast(int(state["stopped_early"] or state["last_epoch"] + 1 >= config.epochs))
    if not training_done:
        if start_epoch:
            logging.info("resuming %s at epoch %d (%s)", workdir, start_epoch + 1, loop.task_name(strategy))
        train, steps = data_lib.training_stream(
            dataset, batch_size=config.batch_size, seed=config.seed, first_epoch=start_epoch, last_epoch=config.epochs
        )
        callbacks = (
            _protocol_callbacks(model, config, dataset, workdir, selection) if chief else [NanGuard(), selection]
        )
        trainer.fit(
            train,
            epochs=config.epochs,
            steps_per_epoch=steps,
            initial_epoch=start_epoch,
            validation_data=data_lib.to_tf_dataset(dataset, "validation", batch_size=1024),
            callbacks=[*callbacks, *extra_callbacks],
            backup_dir=workdir / BACKUP,
        )
    state = read_selection(own)
    best = trainer.gather(-1 if state["best_epoch"] is None else state["best_epoch"])
    if len(set(best)) != 1 or best[0] < 0:
        raise RuntimeError(
            f"the workers disagree on the best epoch ({[b + 1 for b in best]}): a worker lost its state "
            f"under {own}; delete the work dir and run again."
        )
    model.load_weights(own / BEST_WEIGHTS)
    test_logs = trainer.evaluate(data_lib.to_tf_dataset(dataset, "test", batch_size=1024))
    results = _results(config, dataset, state, test_logs)
    if chief:
        _write_results(workdir, results)
    trainer.cleanup(workdir / BACKUP)
    if not chief:
        shutil.rmtree(own, ignore_errors=True)
        with contextlib.suppress(OSError):
            own.parent.rmdir()  # the last worker out removes workers/
    return results


def _save_labels(path: Path, dataset: data_lib.NoisyDataset) -> None:
    arrays = {}
    for split in ("train", "validation"):
        part = getattr(dataset, split)
        arrays.update(
            {
                f"{split}_labels": part.labels,
                f"{split}_clean_labels": part.clean_labels,
                f"{split}_noise_mask": part.noise_mask,
                f"{split}_source_indices": part.source_indices,
            }
        )
    arrays["transition_matrix"] = dataset.transition_matrix
    tmp = path.with_name("tmp." + path.name)
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    os.replace(tmp, path)


def _dedupe_metrics_csv(path: Path) -> None:
    """Keeps the last row per epoch (an epoch redone after a kill appears twice)."""
    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    by_epoch = {row["epoch"]: row for row in rows}
    fields = list(rows[0].keys())
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(sorted(by_epoch.values(), key=lambda r: int(r["epoch"])))


def read_metrics(workdir: str | os.PathLike) -> list[dict[str, float]]:
    """The per-epoch metrics of a run, as floats."""
    path = Path(workdir) / METRICS_CSV
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = {row["epoch"]: row for row in csv.DictReader(f)}
    return [
        {k: float(v) if v not in ("", None) else float("nan") for k, v in row.items()}
        for _, row in sorted(rows.items(), key=lambda kv: int(kv[0]))
    ]
