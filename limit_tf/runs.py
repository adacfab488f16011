"""Reading a run: its config, its data (the same split, subset and noise), its trained model.

The one place that opens a run's work dir for what comes after training:
the detection command (:func:`detect_in_run`), ``--clean_from``
(:func:`load_data` cleans with a finished run's flags), ``--init_from`` and
the benchmarks. The work dir's files are described in
:mod:`limit_tf.workdir`; the detection arithmetic is :mod:`limit_tf.detection`
(arrays only).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from limit_tf import builders, detection, issue_report, workdir
from limit_tf import data as data_lib
from limit_tf.checkpoint import TrainingCheckpoint
from limit_tf.config import ConfigError, ExperimentConfig


def load_data(config: ExperimentConfig) -> data_lib.NoisyDataset:
    """The config's noisy dataset (split, subset and noise fixed by ``noise_seed``), cleaned with ``clean_from``."""
    dataset = with_augmentation(_load_data(config), config.augment, users=config.user_data)
    return cleaned(dataset, config) if config.clean_from else dataset


def with_augmentation(dataset: data_lib.NoisyDataset, mode: str, *, users: bool) -> data_lib.NoisyDataset:
    """The dataset with ``--augment`` applied: ``on``, ``off``, or ``auto`` (a named dataset keeps its
    protocol; your images, ``users``, are augmented when they have color: 3 channels)."""
    if mode == "auto":
        color = len(dataset.input_shape) == 3 and dataset.input_shape[-1] == 3
        on = dataset.augment or (users and color)
    else:
        on = mode == "on"
    if on and len(dataset.input_shape) != 3:
        raise ConfigError(f"--augment=on needs images; the inputs have shape {tuple(dataset.input_shape)}.")
    return dataclasses.replace(dataset, augment=bool(on))


def cleaned(dataset: data_lib.NoisyDataset, config: ExperimentConfig) -> data_lib.NoisyDataset:
    """The training split without (``drop``) or relabelled at (``relabel``) the examples that
    ``clean_from``'s detection flagged; its detection runs first if it has not."""
    source = Path(config.clean_from)
    candidates = sorted(source.glob(f"{output_dir('', config.clean_score or '*')}/{issue_report.ISSUES}"))
    if not candidates:
        score = detect_in_run(source, score=config.clean_score)["score"]
        candidates = [output_dir(source, score) / issue_report.ISSUES]
    if config.clean_score is None and len(candidates) > 1:
        raise ConfigError(
            f"--clean_from={config.clean_from!r} has several detections ({', '.join(c.parent.name for c in candidates)}); "
            "choose one with --clean_score."
        )
    flagged, suggested = issue_report.read_flags(candidates[0])
    if len(flagged) != len(dataset.train):
        raise ConfigError(
            f"{candidates[0]} has {len(flagged)} examples, this run's training split {len(dataset.train)}: "
            "the runs do not share their training data."
        )
    out = data_lib.clean(dataset, flagged, suggested, config.clean)
    logging.info(
        "cleaned with %s: %s %d of %d training examples",
        candidates[0],
        "dropped" if config.clean == "drop" else "relabelled",
        int(flagged.sum()),
        len(flagged),
    )
    return out


def _load_data(config: ExperimentConfig) -> data_lib.NoisyDataset:
    if config.user_data:
        return data_lib.load_user_dataset(
            config.dataset,
            test_data=config.test_data,
            data_dir=config.data_dir,
            image_size=config.image_size,
            label_column=config.label_column,
            allow_download=config.allow_download,
            validation_fraction=config.validation_fraction,
            num_train_examples=config.num_train_examples,
            noise=config.noise,
            noise_rate=config.noise_rate,
            clean_validation=config.clean_validation,
            seed=config.noise_seed,
        )
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
        verify=config.verify_data,
    )


def model_probabilities(model, inputs) -> dict[str, np.ndarray]:
    """Softmax outputs of the classifier (``"classifier"``) and, for models with a q-network, of q (``"predictor"``).

    Args:
      model: a trained Keras model returning logits, or a model of the
        method table (``LimitModel``, ...).
      inputs: a ``tf.data`` dataset of input batches (or an array).
    """
    out = {"classifier": tf.nn.softmax(builders.classifier_of(model).predict(inputs, verbose=0)).numpy()}
    predictor = builders.predictor_of(model)
    if predictor is not None:
        out["predictor"] = tf.nn.softmax(predictor.predict(inputs, verbose=0)).numpy()
    return out


def score_examples(model, inputs, labels, score: str = "limit") -> np.ndarray:
    """Scores every example with a trained model; higher means the label is more likely wrong."""
    if score not in detection.SCORES:
        raise ValueError(f"unknown score {score!r}; allowed: {', '.join(detection.SCORES)}.")
    return detection.score(score, model_probabilities(model, inputs), labels)


def load_trained_model(workdir_path):
    """The trained model of a run: its best epoch; for an unfinished run, the best so far (with a warning).

    Returns:
      ``(model, config, dataset)``.

    Raises:
      FileNotFoundError: the directory holds no run, or no trained model yet.
    """
    import limit_tf

    limit_tf.register_keras_objects()
    run = workdir.RunDir(workdir_path)
    stored = run.config()
    if stored is None:
        raise FileNotFoundError(f"{run.path} is not a run's work dir ({workdir.CONFIG} is missing).")
    given = ExperimentConfig.from_dict(stored)
    dataset = load_data(given)
    config = given.for_data(dataset.input_shape, len(dataset.train))  # as trained
    if run.finished and run.file(workdir.BEST_MODEL).is_file():
        try:
            return keras.models.load_model(run.file(workdir.BEST_MODEL)), config, dataset
        except Exception as e:  # noqa: BLE001 - a damaged .keras file fails in many ways (zip, h5, JSON)
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if not run.file(workdir.BEST_WEIGHTS).is_file():
                raise workdir.CorruptFileError(
                    f"{run.file(workdir.BEST_MODEL)} is not a readable Keras model ({reason}) and "
                    f"{workdir.BEST_WEIGHTS} is missing: train the run again in a new work dir."
                ) from None
            logging.warning(
                "%s is not a readable Keras model (%s); using %s instead.",
                run.file(workdir.BEST_MODEL),
                reason,
                workdir.BEST_WEIGHTS,
            )
    model = builders.build_for_data(config, dataset, tf.distribute.get_strategy())
    if run.finished and run.file(workdir.BEST_WEIGHTS).is_file():
        try:
            model.load_weights(run.file(workdir.BEST_WEIGHTS))
        except Exception as e:  # noqa: BLE001 - a damaged h5 file fails in many ways
            raise workdir.CorruptFileError(
                f"{run.file(workdir.BEST_WEIGHTS)} is not readable ({type(e).__name__}); "
                "train the run again in a new work dir."
            ) from None
        return model, config, dataset
    checkpoint = TrainingCheckpoint(model, run.checkpoint_dir)
    epoch, state = checkpoint.restore_newest()
    if state is None:
        raise FileNotFoundError(f"{run.path} holds no trained model yet (no finished epoch); run the experiment first.")
    checkpoint.load_best()
    best = state["selection"]["best_epoch"] + 1
    logging.warning(
        "%s is unfinished (%d of at most %d epochs): detecting with its best epoch so far (%d).",
        run.path,
        epoch,
        config.epochs,
        best,
    )
    return model, config, dataset


def validation_trust(val_probs: dict | None, dataset: data_lib.NoisyDataset, estimate) -> dict:
    """The classifier on the validation split: its accuracy on the given labels and its estimated clean
    accuracy; and the warning when the detection should not be acted on (:func:`limit_tf.detection.trust_warning`:
    that accuracy is low, or the estimated share of wrong labels is over half).

    The clean accuracy is what the noise estimate implies
    (:func:`limit_tf.detection.estimated_clean_accuracy`). The classifier's
    mean confidence is recorded beside it for reference; it errs both ways and
    decides nothing.
    """
    if val_probs is None:
        return {
            "validation_accuracy": None,
            "estimated_clean_accuracy": None,
            "trust_warning": detection.trust_warning(None, estimate.noise_rate),
        }
    probs = val_probs["classifier"]
    predicted = probs.argmax(axis=1)
    clean = detection.estimated_clean_accuracy(predicted, dataset.validation.labels, estimate.joint)
    return {
        "validation_accuracy": float(np.mean(predicted == dataset.validation.labels)),
        "estimated_clean_accuracy": clean,
        "clean_accuracy_by_noise_estimate": clean,  # the same figure, under the name earlier versions wrote
        "mean_confidence": detection.confidence(probs),
        "trust_warning": detection.trust_warning(clean, estimate.noise_rate),
    }


def other_estimates(probs: dict, val_probs: dict | None, labels, val_labels) -> dict:
    """The share of wrong labels by the other estimators, for comparison (``detection.json``'s ``estimates``):
    confident learning on q's probabilities, and on the classifier's after temperature scaling fitted on
    the validation split."""
    out = {}
    if probs.get("predictor") is not None:
        out["q"] = detection.estimate_noise(probs["predictor"], labels).noise_rate
    if val_probs is not None:
        t = detection.temperature(val_probs["classifier"], val_labels)
        out["temperature"] = t
        out["classifier_calibrated"] = detection.estimate_noise(
            detection.scaled(probs["classifier"], t), labels
        ).noise_rate
    return out


def output_dir(workdir_path, score: str) -> Path:
    """Where :func:`detect_in_run` writes by default: ``<workdir>/detection_<score>``."""
    return Path(workdir_path) / f"detection_{score}"


def detect_in_run(
    workdir_path,
    *,
    score: str | None = None,
    threshold: float | None = None,
    budget=None,
    out_dir=None,
    per_class: bool = True,
) -> dict:
    """Finds the training labels of a run that look wrong; writes ``<workdir>/detection_<score>/``.

    How many to flag is estimated from the run's classifier (:func:`limit_tf.detection.estimate_noise`),
    and in which classes (:func:`limit_tf.detection.class_budgets`; ``per_class=False``: over all examples),
    unless ``budget`` or ``threshold`` says it; which ones, by ``score``.

    Args:
      workdir_path: a run's work dir (``limit_tf.main``); an unfinished run
        is scored with its best epoch so far, with a warning.
      score: one of :data:`limit_tf.detection.SCORES` (default: ``limit`` for a model with a
        q-network, else ``self_confidence``).
      threshold, budget: see :func:`limit_tf.detection.rank`; they override the estimate.
      out_dir: where to write (default ``<workdir>/detection_<score>``).

    Returns:
      The summary written to ``detection.json``: the estimate, the number
      flagged and, when the true labels are known (benchmarks), the realized
      noise rate and :func:`limit_tf.detection.evaluate`'s metrics.
    """
    if score is not None and score not in detection.SCORES:
        raise ValueError(f"unknown score {score!r}; allowed: {', '.join(detection.SCORES)}.")
    model, config, dataset = load_trained_model(workdir_path)
    probs = model_probabilities(model, data_lib.to_tf_dataset(dataset, "train", batch_size=1024, inputs_only=True))
    val_probs = (
        model_probabilities(model, data_lib.to_tf_dataset(dataset, "validation", batch_size=1024, inputs_only=True))
        if len(dataset.validation)
        else None
    )
    score = score or ("limit" if config.spec.predictor_network else "self_confidence")
    labels = dataset.train.labels
    found, estimate, summary = detection.detect(
        detection.score(score, probs, labels),
        probs["classifier"],
        labels,
        predictor_probs=probs.get("predictor"),
        threshold=threshold,
        budget=budget,
        noise_mask=dataset.train.noise_mask if dataset.truth_known else None,
        per_class=per_class,
    )
    names = list(dataset.class_names)
    summary["flagged_per_class"] = dict(zip(names, summary["flagged_per_class"], strict=True))
    if "class_thresholds" in summary:
        summary["class_thresholds"] = dict(zip(names, summary["class_thresholds"], strict=True))
    summary = {"score": score, **summary, "truth_known": dataset.truth_known}
    summary["estimated_noise_interval"] = list(
        detection.estimate_interval(probs["classifier"], labels, predictor_probs=probs.get("predictor"))
    )
    summary.update(validation_trust(val_probs, dataset, estimate))
    summary["estimates"] = {
        "classifier": detection.estimate_noise(probs["classifier"], labels).noise_rate,
        **other_estimates(probs, val_probs, labels, dataset.validation.labels),
    }
    validation = score_validation(val_probs, dataset, score, found)
    if validation is not None:
        summary["validation_scored"] = len(validation["scores"])
        summary["validation_flagged"] = int(validation["flagged"].sum())
        if dataset.truth_known:  # out-of-sample scores against the truth (benchmarks)
            mask = dataset.validation.noise_mask
            measured = detection.evaluate(validation["detection"], mask)
            summary.update(
                {f"validation_{k}": measured[k] for k in ("roc_auc", "precision", "recall") if k in measured}
            )
    if dataset.truth_known:
        summary["realized_noise_rate"] = dataset.realized_noise_rate
    if summary["trust_warning"]:
        logging.warning("%s", summary["trust_warning"])
    issue_report.save(
        out_dir or output_dir(workdir_path, score),
        found,
        dataset,
        suggested=estimate.suggested,
        summary=summary,
        score_name=score,
        validation=validation,
    )
    return summary


def score_validation(
    val_probs: dict | None, dataset: data_lib.NoisyDataset, score: str, found: detection.Detection
) -> dict | None:
    """The validation split scored by the same model (out of sample: it never trained on it) and flagged
    at the training ranking's threshold(s) (``found``'s, class by class when it flagged so), so that every
    example given has a row; None without one."""
    if val_probs is None:
        return None
    scores = detection.score(score, val_probs, dataset.validation.labels)
    held = found.apply(scores, dataset.validation.labels)
    return {
        "scores": scores,
        "flagged": held.flagged,
        "detection": held,
        "suggested": val_probs["classifier"].argmax(axis=1),
    }
