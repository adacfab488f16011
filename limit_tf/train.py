"""Runs one experiment in the paper's protocol, from an :class:`ExperimentConfig`.

Protocol: train; after every epoch measure (noisy, unless
``clean_validation``) validation accuracy; remember the weights of the best
epoch; stop when it has not improved for ``patience`` epochs; evaluate the
best weights on the clean test set. It is written once, over an engine
(:mod:`limit_tf.engine`): Keras' ``fit`` on one device or under
``MirroredStrategy``, the distributed loop under ``MultiWorkerMirroredStrategy``.

The work dir's files are described in :mod:`limit_tf.workdir`. A run killed
at any instant (even with SIGKILL, even inside a checkpoint write) and
started again with the same experiment resumes from its last finished epoch;
with ``deterministic`` it ends with the same results as an uninterrupted
run. A finished run of the same experiment is not run again: its results are
returned. A work dir that holds progress of a *different* experiment is
refused (:meth:`ExperimentConfig.differences` names what differs); settings
that do not change results (where the data comes from, logging, the
strategy) may change between reruns.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import keras
import numpy as np
from absl import logging

from limit_tf import builders, distribute, inference, methods, paths, runs, workdir
from limit_tf import callbacks as callbacks_lib
from limit_tf import data as data_lib
from limit_tf import engine as engine_lib
from limit_tf.checkpoint import TrainingCheckpoint
from limit_tf.config import PAPER_BATCH_SIZE, ConfigError, ExperimentConfig, auto_batch_size

TrainingDivergedError = callbacks_lib.TrainingDivergedError
# Where they live now (0.2 had them here): a config's data is read by the run reader, its model built by the builders.
load_data = runs.load_data
build_model = builders.build_for_data


def eval_batch_size(input_shape) -> int:
    """The inference batch of the per-epoch evaluation and the test pass (:func:`inference.evaluation_settings`)."""
    return inference.evaluation_settings(input_shape)[1]


def _stored_config(run: workdir.RunDir) -> ExperimentConfig | None:
    stored = run.config()
    if stored is None:
        return None
    try:
        return ExperimentConfig.from_dict(stored)
    except (ConfigError, TypeError) as e:
        raise workdir.CorruptFileError(
            f"{run.file(workdir.CONFIG)} is not a config of this version ({e}); use a new work dir."
        ) from None


def _has_progress(run: workdir.RunDir) -> bool:
    """Whether the work dir holds something that a different experiment would destroy."""
    return run.finished or run.checkpoint_dir.is_dir() or bool(run.metrics())


def data_fingerprint(config: ExperimentConfig) -> dict | None:
    """A fingerprint of your own data's files (``--dataset`` and ``--test_data``); None for named datasets."""
    if not config.user_data:
        return None
    kind, _ = data_lib.user.parse(config.dataset)
    out = {"dataset": data_lib.user.fingerprint(config.dataset)}
    if config.test_data and kind != "tfds":
        out["test_data"] = data_lib.user.fingerprint(f"{kind}:{config.test_data}")
    return out if any(out.values()) else None


def check_data_unchanged(config: ExperimentConfig) -> None:
    """Refuses to continue or report a run whose data files changed since it read them.

    Raises:
      ConfigError: they did (the message says what changed).
    """
    run = workdir.RunDir(config.workdir)
    stored = run.data_fingerprint()
    if not stored:
        return
    current = data_fingerprint(config) or {}
    for flag in ("dataset", "test_data"):
        if stored.get(flag):
            change = data_lib.user.fingerprint_changes(stored[flag], current.get(flag))
            if change:
                raise ConfigError(
                    f"--{flag}={getattr(config, flag)!r} changed since the run in --workdir={config.workdir!r} "
                    f"read it: {change}; train on the data as it is now in a new work dir, or delete that one."
                )


def check_workdir(config: ExperimentConfig) -> None:
    """Refuses a work dir that holds files no run wrote, progress of a different
    experiment, or progress on data files that have changed since.

    Raises:
      ConfigError: it does (the message names the files, the settings that
        differ, or what changed in the data).
    """
    problem = workdir.foreign_content_problem(config.workdir)
    if problem:
        raise ConfigError(f"--workdir={config.workdir!r} {problem}.")
    run = workdir.RunDir(config.workdir)
    stored = _stored_config(run)
    if stored is None or not _has_progress(run):
        return
    changed = config.differences(stored)
    if changed:
        raise ConfigError(
            f"--workdir={config.workdir!r} holds a different experiment (differs in: {', '.join(changed)}); "
            "use a new work dir, or delete that one."
        )
    check_data_unchanged(config)


def prepare(config: ExperimentConfig, *, check_run_dir: bool = True) -> data_lib.NoisyDataset:
    """Validates the config and (with ``check_run_dir``) the work dir, then loads the data; writes nothing.

    Raises:
      ConfigError: a bad setting, a work dir of another experiment, or data
        that is missing offline, damaged or invalid.
    """
    paths.check(config.validate())
    if check_run_dir:
        check_workdir(config)
    try:
        return load_data(config)
    except data_lib.DataNotFoundError as e:
        raise ConfigError(f"--dataset={config.dataset!r}: {e}") from None
    except ValueError as e:  # DataFileError included
        raise ConfigError(str(e)) from None


def finished_results(config: ExperimentConfig) -> dict | None:
    """The results of the config's work dir if it holds a finished run of this experiment.

    Raises:
      ConfigError: the work dir holds a finished run of a different experiment.
    """
    run = workdir.RunDir(config.workdir)
    results = run.results()
    if results is None:
        return None
    try:  # the settings as given (a run's "config" has the auto ones filled in)
        stored = ExperimentConfig.from_dict(results.get("requested", results["config"]))
    except (KeyError, TypeError, ConfigError):
        raise workdir.CorruptFileError(
            f"{run.file(workdir.RESULTS)} holds no config of this version; delete it to evaluate the run again."
        ) from None
    changed = config.differences(stored)
    if changed:
        raise ConfigError(
            f"--workdir={config.workdir!r} holds a finished run of a different experiment "
            f"(differs in: {', '.join(changed)}); use a new work dir."
        )
    check_data_unchanged(config)
    return results


def run_experiment(config: ExperimentConfig, *, callbacks=(), dataset: data_lib.NoisyDataset | None = None) -> dict:
    """Runs (or resumes, or reports) one experiment; returns its results.

    Args:
      config: the experiment.
      callbacks: extra Keras callbacks (tests use them to interrupt a run).
      dataset: the already loaded data of ``config`` (skips loading).

    Raises:
      ConfigError: bad settings, data or work dir (nothing is written then).
      TrainingDivergedError: the loss became NaN (the last good epoch is kept).
    """
    # multi_worker: before any other TensorFlow op
    strategy = distribute.get_strategy(config.strategy, config.devices, cluster_timeout=config.cluster_timeout)
    engine = engine_lib.for_strategy(strategy)
    run = workdir.RunDir(config.workdir)
    done = _finished(paths.check(config.validate()), engine, run)
    if done is not None:
        return done
    if dataset is None:
        dataset = prepare(config)
    else:
        check_workdir(config)
    own = engine.own_dir(run)
    with workdir.locked(own.path):
        done = _finished(config, engine, run)  # another process may have finished it meanwhile
        if done is not None:
            return done
        return _train(config, dataset, engine, run, own, callbacks)


def _finished(config: ExperimentConfig, engine, run: workdir.RunDir) -> dict | None:
    """The results of a finished run of this experiment, as the chief found them (collective), or None."""
    done = finished_results(config) if engine.is_chief else None
    if not engine.broadcast(int(done is not None)):
        return None
    logging.info("%s is finished; not running it again.", config.workdir)
    return done if engine.is_chief else (run.results() or {})


def _train(requested, dataset, engine, run: workdir.RunDir, own: workdir.RunDir, callbacks):
    """The protocol proper, in a locked work dir (:func:`run_experiment`): with the settings left at auto
    filled in by the data's recipe (``config.json`` keeps them as given)."""
    config = requested.for_data(dataset.input_shape, len(dataset.train))
    recipe = requested.recipe(dataset.input_shape)
    if not requested.resolved and recipe.name != "paper" and engine.is_chief:
        logging.info(
            "%s: the %s recipe for the settings not given (%s)",
            config.workdir,
            recipe.name,
            _auto_settings(requested, config),
        )
    model = build_model(config, dataset, engine.strategy)
    engine.bind(model)
    if engine.is_chief:
        run.write_config(requested.to_dict())
        fingerprint = data_fingerprint(config)
        if fingerprint:
            run.write_data_fingerprint(fingerprint)
        run.write_labels(label_arrays(dataset))
    checkpoint = TrainingCheckpoint(model, own.checkpoint_dir)
    start, state = engine.restore(checkpoint)
    protocol = callbacks_lib.ProtocolState(
        checkpoint, state or callbacks_lib.initial_state(), config.patience, run if engine.is_chief else None
    )
    protocol.mirror()  # metrics.csv and selection.json agree with the restored state
    selection = protocol.selection
    if not (selection["stopped_early"] or selection["last_epoch"] + 1 >= config.epochs):
        if start:
            logging.info("resuming %s at epoch %d", config.workdir, start + 1)
        batch = config.batch_size
        if batch != PAPER_BATCH_SIZE and not requested.batch_size:
            logging.info(
                "%d training examples: batch size %d (auto), %d steps per epoch",
                len(dataset.train),
                batch,
                -(-len(dataset.train) // batch),
            )
        train, steps = data_lib.training_stream(
            dataset, batch_size=batch, epochs=config.epochs, seed=config.seed, first_epoch=start
        )
        warning = too_few_steps(config, len(dataset.train), steps)
        if warning:
            logging.warning("%s", warning)
        engine.fit(
            train,
            epochs=config.epochs,
            steps_per_epoch=steps,
            initial_epoch=start,
            callbacks=[*protocol_callbacks(model, config, dataset, protocol, steps, engine.is_chief), *callbacks],
        )
    return _finish(model, engine, config, dataset, protocol, own, requested)


def _auto_settings(requested: ExperimentConfig, config: ExperimentConfig) -> str:
    """``--epochs=60, --lr_schedule=cosine, ...``: what the recipe filled in."""
    given, used = requested.to_dict(), config.to_dict()
    return ", ".join(f"--{k}={used[k]}" for k in sorted(used) if given[k] != used[k] and k != "architecture")


# Fewer gradient steps than this in a whole run leave a network far from trained (small tables: a
# 104-row table at batch 256 takes one step per epoch). Measured in benchmarks/small_data.py.
MIN_STEPS = 500


def too_few_steps(config: ExperimentConfig, num_train: int, steps_per_epoch: int) -> str | None:
    """A warning naming the fix when the whole run is fewer than :data:`MIN_STEPS` gradient steps, or None."""
    total = steps_per_epoch * config.epochs
    if total >= MIN_STEPS:
        return None
    epochs = -(-MIN_STEPS // steps_per_epoch)
    batch = config.resolved_batch_size(num_train)
    smaller = auto_batch_size(num_train)
    also = f", or --batch_size={smaller}" if smaller < batch else ""
    return (
        f"only {total} gradient steps in the whole run ({num_train} training examples at --batch_size="
        f"{batch} make {steps_per_epoch} step{'s' if steps_per_epoch != 1 else ''} per epoch, "
        f"x --epochs={config.epochs}); fewer than {MIN_STEPS} leave the network undertrained: use --epochs={epochs}"
        f"{also}."
    )


def selection_callbacks(model, config, dataset, protocol: callbacks_lib.ProtocolState, chief: bool) -> list:
    """What selects the epoch, in order: :class:`~limit_tf.callbacks.EpochEvaluation` (validation, and on
    the chief the memorization metrics and the optional test monitor), the NaN guard, the protocol state.

    The runner and the tuner's trials select with these same callbacks. Every
    worker measures the validation split itself (the same weights, the same
    data: the same figure), and the chief decides.
    """

    def inputs(split: str):
        return data_lib.to_tf_dataset(dataset, split, batch_size=eval_batch_size(dataset.input_shape), inputs_only=True)

    truth = dataset.train.clean_labels if dataset.truth_known else None
    test = config.track_test_accuracy and len(dataset.test)
    evaluation = callbacks_lib.EpochEvaluation(
        builders.classifier_of(model),
        validation=(inputs("validation"), dataset.validation.labels),
        train=(inputs("train"), dataset.train.labels, truth) if chief else None,
        test=(inputs("test"), dataset.test.labels) if test and chief else None,
    )
    return [evaluation, callbacks_lib.NanGuard(), protocol]


def protocol_callbacks(model, config, dataset, protocol: callbacks_lib.ProtocolState, steps: int, chief: bool) -> list:
    """The runner's callbacks: :func:`selection_callbacks`, then (chief) TensorBoard and the progress lines."""
    out = selection_callbacks(model, config, dataset, protocol, chief)
    if chief:  # the monitors only add to the chief's files
        label = f"{methods.variant_of(config).name} {Path(config.workdir).name}"
        out += [
            keras.callbacks.TensorBoard(str(Path(config.workdir) / workdir.TENSORBOARD)),
            callbacks_lib.ProgressLog(protocol, config.epochs, steps, label),
        ]
    return out


def _finish(model, engine, config, dataset, protocol: callbacks_lib.ProtocolState, own: workdir.RunDir, requested):
    selection = protocol.selection
    best = engine.gather(-1 if selection["best_epoch"] is None else selection["best_epoch"])
    if len(set(best)) != 1 or best[0] < 0:
        raise RuntimeError(
            f"the workers disagree on the best epoch ({[b + 1 for b in best]}): a worker lost its state "
            f"under {own.path}; delete the work dir and run again."
        )
    protocol.checkpoint.load_best()
    test = data_lib.to_tf_dataset(dataset, "test", batch_size=eval_batch_size(dataset.input_shape))
    test_logs = engine.evaluate(test) if len(dataset.test) else None
    results = _results(config, dataset, selection, test_logs, requested)
    # Every worker saves (reading distributed variables may be collective); only the chief's files stay.
    with workdir.atomic_path(own.file(workdir.BEST_WEIGHTS)) as tmp:
        model.save_weights(tmp)
    with workdir.atomic_path(own.file(workdir.BEST_MODEL)) as tmp:
        model.save(tmp)
    if engine.is_chief:
        own.write_results(results)
        logging.info(
            "[%s] test accuracy %s at best epoch %d (val %.4f); results in %s",
            config.method,
            "(no test set)" if results["test_accuracy"] is None else f"{results['test_accuracy']:.4f}",
            results["best_epoch"],
            results["best_val_accuracy"],
            own.file(workdir.RESULTS),
        )
    shutil.rmtree(own.checkpoint_dir, ignore_errors=True)
    if not engine.is_chief:
        shutil.rmtree(own.path, ignore_errors=True)
        with contextlib.suppress(OSError):
            own.path.parent.rmdir()  # the last worker out removes workers/
    return results


def _results(config, dataset, selection: dict, test_logs: dict | None, requested) -> dict:
    return {
        "test_accuracy": None if test_logs is None else float(test_logs["accuracy"]),
        "test_loss": None if test_logs is None else float(test_logs["loss"]),
        "test_set": "clean test set" if test_logs is not None else "none given: validation accuracy only",
        "labels_truth_known": dataset.truth_known,
        "class_names": list(dataset.class_names),
        "best_val_accuracy": selection["best_value"],
        "best_epoch": selection["best_epoch"] + 1,
        "epochs_run": selection["last_epoch"] + 1,
        "stopped_early": selection["stopped_early"],
        "realized_noise_rate": dataset.realized_noise_rate if dataset.truth_known else None,
        "validation_noise_rate": dataset.validation.noise_rate if dataset.truth_known else None,
        "num_train_examples": len(dataset.train) + dataset.num_dropped,
        "num_train_examples_used": len(dataset.train),
        "batch_size": config.resolved_batch_size(len(dataset.train)),
        "train_wall_time_s": selection["train_seconds"],
        "versions": workdir.library_versions(),
        "config": config.to_dict(),  # as trained: the auto settings filled in
        "requested": requested.to_dict(),  # as given (what a rerun is compared with)
    }


def label_arrays(dataset: data_lib.NoisyDataset) -> dict[str, np.ndarray]:
    """What ``labels.npz`` holds: per split the labels, masks and source indices; the matrix; class names."""
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
        if part.origins is not None:
            arrays[f"{split}_origins"] = np.asarray(part.origins).astype(str)
    arrays["transition_matrix"] = dataset.transition_matrix
    arrays["class_names"] = np.asarray(dataset.class_names, dtype=str)
    arrays["truth_known"] = np.asarray(dataset.truth_known)
    return arrays
