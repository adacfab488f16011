"""Finding mislabeled training examples (paper Sec. 4.1 and appendix C).

A score per example, higher = the observed label is more likely wrong:

- ``limit``: the distance between LIMIT's predicted and the cross-entropy
  gradient w.r.t. the logits, ``||g_pred - g_ce|| = ||y - s(q(x))||``
  (the paper's appendix C; docs/usage.md, "Your own data"). Needs a :class:`~limit_tf.LimitModel`.
- From any classifier (CE-trained ones too): ``cross_entropy`` (``-log
  s_y``), ``self_confidence`` (``1 - s_y``) and ``normalized_margin``
  (``max_{c != y} s_c - s_y``, in [-1, 1]).

:func:`estimate_noise` estimates how many labels are wrong without being
told (confident learning's per-class thresholds, on probabilities that did
not learn the labels: LIMIT's classifier never sees them); :func:`rank`
turns scores into ranked indices and a flag mask (that many, or a threshold
or budget); :func:`evaluate` measures them against a known corruption mask
with scikit-learn's metrics. :func:`detect_in_run` does all of it for a
run's work dir and writes ``label_issues.csv`` and a summary
(:mod:`limit_tf.issue_report`); ``python -m limit_tf.detection
--run=RUN`` from the command line (``--workdir`` is the same flag).
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from sklearn import metrics as skm


def _probs_and_observed(probs, labels) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, np.float64)
    y = np.asarray(labels).astype(np.int64).reshape(-1)
    if p.ndim != 2 or p.shape[0] != y.shape[0]:
        raise ValueError(f"probabilities {p.shape} and labels {y.shape} do not match: (N, K) and (N,) are required.")
    if y.size and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(f"labels span [{y.min()}, {y.max()}]: they must lie in [0, {p.shape[1]}).")
    return p, y


def limit_score(predictor_probs, labels) -> np.ndarray:
    """``||y - s(q(x))||_2``: LIMIT's predicted-vs-CE gradient distance."""
    r, y = _probs_and_observed(predictor_probs, labels)
    return np.linalg.norm(np.eye(r.shape[1])[y] - r, axis=1)


def cross_entropy_score(probs, labels) -> np.ndarray:
    """``-log s_y``: the loss of the observed label."""
    p, y = _probs_and_observed(probs, labels)
    return -np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1.0))


def self_confidence_score(probs, labels) -> np.ndarray:
    """``1 - s_y``: low confidence in the observed label."""
    p, y = _probs_and_observed(probs, labels)
    return 1.0 - p[np.arange(len(y)), y]


def normalized_margin_score(probs, labels) -> np.ndarray:
    """``max_{c != y} s_c - s_y``: another class beats the observed label."""
    p, y = _probs_and_observed(probs, labels)
    own = p[np.arange(len(y)), y]
    others = p.copy()
    others[np.arange(len(y)), y] = -np.inf
    return others.max(axis=1) - own


SCORES: Mapping[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "limit": limit_score,
    "cross_entropy": cross_entropy_score,
    "self_confidence": self_confidence_score,
    "normalized_margin": normalized_margin_score,
}


def model_probabilities(model, inputs) -> dict[str, np.ndarray]:
    """Softmax outputs of the classifier (``"classifier"``) and, for models with a q-network, of q (``"predictor"``).

    Args:
      model: a trained Keras model returning logits, or a model of the
        method table (``LimitModel``, ...).
      inputs: a ``tf.data`` dataset of input batches (or an array).
    """
    import tensorflow as tf

    from limit_tf import builders

    out = {"classifier": tf.nn.softmax(builders.classifier_of(model).predict(inputs, verbose=0)).numpy()}
    predictor = builders.predictor_of(model)
    if predictor is not None:
        out["predictor"] = tf.nn.softmax(predictor.predict(inputs, verbose=0)).numpy()
    return out


def score_examples(model, inputs, labels, score: str = "limit") -> np.ndarray:
    """Scores every example; higher means the label is more likely wrong."""
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; allowed: {', '.join(SCORES)}.")
    probs = model_probabilities(model, inputs)
    if score == "limit":
        if "predictor" not in probs:
            raise ValueError(
                "score 'limit' needs a model with a q-network (LIMIT); "
                "use cross_entropy, self_confidence or normalized_margin."
            )
        return limit_score(probs["predictor"], labels)
    return SCORES[score](probs["classifier"], labels)


@dataclasses.dataclass(frozen=True)
class Detection:
    """Ranked suspects.

    Attributes:
      scores: per-example scores (N,).
      ranked: indices sorted from most to least suspicious.
      flagged: boolean mask (N,) of the examples flagged as mislabeled.
      threshold: the score at or above which an example is flagged.
    """

    scores: np.ndarray
    ranked: np.ndarray
    flagged: np.ndarray
    threshold: float


def rank(scores, *, threshold: float | None = None, budget: int | float | None = None) -> Detection:
    """Ranks examples and flags those at or above ``threshold``, or the top ``budget``.

    Args:
      scores: (N,) scores, higher = more suspicious.
      threshold: flag scores >= threshold.
      budget: flag this many (an int) or this fraction (a float in (0, 1]) of
        the most suspicious examples. Exactly one of threshold and budget.
    """
    s = np.asarray(scores, np.float64)
    if s.ndim != 1 or not np.all(np.isfinite(s)):
        raise ValueError("scores must be a 1-D array of finite numbers.")
    if (threshold is None) == (budget is None):
        raise ValueError("give exactly one of threshold= and budget=.")
    if threshold is not None and not np.isfinite(threshold):
        raise ValueError(f"threshold={threshold!r} is not allowed: it must be a finite number.")
    ranked = np.argsort(-s, kind="stable")
    if budget is not None:
        count = int(round(budget * len(s))) if isinstance(budget, float) else int(budget)
        if isinstance(budget, float) and not 0 < budget <= 1:
            raise ValueError(f"budget={budget!r} is not allowed: a fraction must be in (0, 1].")
        if not 0 <= count <= len(s):
            raise ValueError(f"budget={budget!r} is not allowed: it must be between 0 and {len(s)} examples.")
        flagged = np.zeros(len(s), bool)
        flagged[ranked[:count]] = True
        threshold = float(s[ranked[count - 1]]) if count else float("inf")
    else:
        flagged = s >= threshold
    return Detection(scores=s, ranked=ranked, flagged=flagged, threshold=float(threshold))


@dataclasses.dataclass(frozen=True)
class NoiseEstimate:
    """How many labels look wrong, estimated without knowing the noise rate.

    Attributes:
      num_issues: the estimated number of wrong labels.
      noise_rate: ``num_issues`` over the number of examples.
      thresholds: per class ``j``, the mean predicted probability of ``j``
        over the examples labelled ``j``.
      joint: (K, K) the calibrated confident joint, ``[given, likely true]``.
      suggested: per example, the most probable class (the label to suggest).
    """

    num_issues: int
    noise_rate: float
    thresholds: np.ndarray
    joint: np.ndarray
    suggested: np.ndarray


ESTIMATOR = (
    "confident learning (Northcutt, Jiang & Chuang, 2021): per-class thresholds t_j = the mean predicted "
    "probability of class j over the examples labelled j; an example labelled i counts as 'likely j' when j is "
    "its most probable class among those whose probability reaches their threshold; the counts are calibrated "
    "to the class sizes and the off-diagonal total is the estimate. Assumes class-conditional noise and "
    "probabilities that did not learn the labels (LIMIT's classifier never sees them; a CE model's in-sample "
    "probabilities have memorized some, which makes the estimate low)."
)


def estimate_noise(probs, labels) -> NoiseEstimate:
    """Estimates the number of wrong labels from predicted probabilities (see :data:`ESTIMATOR`)."""
    p, y = _probs_and_observed(probs, labels)
    k = p.shape[1]
    counts = np.bincount(y, minlength=k)
    thresholds = np.array([p[y == j, j].mean() if counts[j] else 1.0 for j in range(k)])
    above = p >= thresholds[None, :]
    likely = np.where(above, p, -np.inf).argmax(axis=1)
    confident = above.any(axis=1)
    joint = np.zeros((k, k))
    np.add.at(joint, (y[confident], likely[confident]), 1.0)
    rows = joint.sum(axis=1, keepdims=True)
    joint = np.divide(joint, rows, out=np.zeros_like(joint), where=rows > 0) * counts[:, None]
    num = int(round(joint.sum() - np.trace(joint)))
    return NoiseEstimate(num, num / max(len(y), 1), thresholds, joint, p.argmax(axis=1))


def evaluate(detection: Detection, noise_mask, ks=(100, 1000)) -> dict[str, float]:
    """Detection quality against the true corruption mask (scikit-learn metrics).

    Returns ROC AUC, average precision, precision / recall / F1 of the flags,
    and precision at k for each k in ``ks`` and at k = the number of
    corrupted examples.
    """
    truth = np.asarray(noise_mask, bool)
    if truth.shape != detection.scores.shape:
        raise ValueError(f"noise_mask has shape {truth.shape}, scores {detection.scores.shape}: they must match.")
    out = {
        "num_examples": int(truth.size),
        "num_corrupted": int(truth.sum()),
        "num_flagged": int(detection.flagged.sum()),
    }
    if 0 < truth.sum() < truth.size:
        out["roc_auc"] = float(skm.roc_auc_score(truth, detection.scores))
        out["average_precision"] = float(skm.average_precision_score(truth, detection.scores))
    precision, recall, f1, _ = skm.precision_recall_fscore_support(
        truth, detection.flagged, average="binary", zero_division=0
    )
    out.update(precision=float(precision), recall=float(recall), f1=float(f1), threshold=detection.threshold)
    for k in (*ks, int(truth.sum())):
        if 0 < k <= truth.size:
            out[f"precision_at_{k}"] = float(truth[detection.ranked[:k]].mean())
    return out


def load_trained_model(workdir_path):
    """The trained model of a run: its best epoch; for an unfinished run, the best so far (with a warning).

    Returns:
      ``(model, config, dataset)``.

    Raises:
      FileNotFoundError: the directory holds no run, or no trained model yet.
    """
    import keras
    from absl import logging

    import limit_tf
    from limit_tf import train, workdir
    from limit_tf.checkpoint import TrainingCheckpoint
    from limit_tf.config import ExperimentConfig

    limit_tf.register_keras_objects()
    run = workdir.RunDir(workdir_path)
    stored = run.config()
    if stored is None:
        raise FileNotFoundError(f"{run.path} is not a run's work dir ({workdir.CONFIG} is missing).")
    config = ExperimentConfig.from_dict(stored)
    dataset = train.load_data(config)
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
    import tensorflow as tf

    model = train.build_model(config, dataset, tf.distribute.get_strategy())
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


def output_dir(workdir_path, score: str) -> Path:
    """Where :func:`detect_in_run` writes by default: ``<workdir>/detection_<score>``."""
    return Path(workdir_path) / f"detection_{score}"


def detect_in_run(
    workdir_path, *, score: str | None = None, threshold: float | None = None, budget=None, out_dir=None
) -> dict:
    """Finds the training labels of a run that look wrong; writes ``<workdir>/detection_<score>/``.

    How many to flag is estimated from the run's classifier (:func:`estimate_noise`),
    unless ``budget`` or ``threshold`` says it; which ones, by ``score``.

    Args:
      workdir_path: a run's work dir (``limit_tf.main``); an unfinished run
        is scored with its best epoch so far, with a warning.
      score: one of :data:`SCORES` (default: ``limit`` for a model with a
        q-network, else ``self_confidence``).
      threshold, budget: see :func:`rank`; they override the estimate.
      out_dir: where to write (default ``<workdir>/detection_<score>``).

    Returns:
      The summary written to ``detection.json``: the estimate, the number
      flagged and, when the true labels are known (benchmarks), the realized
      noise rate and :func:`evaluate`'s metrics.
    """
    from limit_tf import data as data_lib
    from limit_tf import issue_report

    if score is not None and score not in SCORES:
        raise ValueError(f"unknown score {score!r}; allowed: {', '.join(SCORES)}.")
    model, config, dataset = load_trained_model(workdir_path)
    inputs = data_lib.to_tf_dataset(dataset, "train", batch_size=1024, inputs_only=True)
    probs = model_probabilities(model, inputs)
    score = score or ("limit" if "predictor" in probs else "self_confidence")
    labels = dataset.train.labels
    if score == "limit" and "predictor" not in probs:
        raise ValueError(
            "score 'limit' needs a model with a q-network (LIMIT); "
            "use cross_entropy, self_confidence or normalized_margin."
        )
    scores = SCORES[score](probs["predictor" if score == "limit" else "classifier"], labels)
    estimate = estimate_noise(probs["classifier"], labels)
    by_estimate = threshold is None and budget is None
    if by_estimate:
        budget = estimate.num_issues
    detection = rank(scores, threshold=threshold, budget=budget)
    summary = {
        "score": score,
        "num_examples": len(labels),
        "num_flagged": int(detection.flagged.sum()),
        "flagged_by": "estimate" if by_estimate else "budget or threshold",
        "estimated_issues": estimate.num_issues,
        "estimated_noise_rate": estimate.noise_rate,
        "estimator": ESTIMATOR,
        "threshold": detection.threshold,
        "truth_known": dataset.truth_known,
    }
    if dataset.truth_known:
        summary["realized_noise_rate"] = dataset.realized_noise_rate
        summary.update(evaluate(detection, dataset.train.noise_mask))
    issue_report.save(
        out_dir or output_dir(workdir_path, score),
        detection,
        dataset,
        suggested=estimate.suggested,
        summary=summary,
        score_name=score,
    )
    return summary


def parse_budget(text: str | None):
    """``--budget``: an integer count or a fraction in (0, 1]."""
    if text is None:
        return None
    try:
        return float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        raise ValueError(
            f"--budget={text!r} is not allowed: give a count (e.g. 500) or a fraction (e.g. 0.2)."
        ) from None


def main(argv) -> None:
    """``python -m limit_tf.detection --workdir=RUN [--score=limit] [--budget=N | --threshold=T]``."""
    del argv
    from absl import flags

    from limit_tf import cli

    f = flags.FLAGS
    if not f.run:
        cli.fail("--run is required: the work dir of a run of limit_tf.main (or --workdir, the same flag).")
    try:
        report = detect_in_run(f.run, score=f.score, threshold=f.threshold, budget=parse_budget(f.budget))
    except (FileNotFoundError, ValueError) as e:
        cli.fail(str(e))
    print(describe(report, output_dir(f.run, report["score"])))


def describe(summary: dict, out_dir, top: int = 5) -> str:
    """What a detection found, in a few lines for a person (``detection.json`` holds everything)."""
    from limit_tf import issue_report

    n, flagged = summary["num_examples"], summary["num_flagged"]
    how = "as many as estimated" if summary["flagged_by"] == "estimate" else "by your budget or threshold"
    lines = [
        f"{n} training examples; estimated {summary['estimated_issues']} wrong labels "
        f"({100 * summary['estimated_noise_rate']:.1f}%, confident learning on the classifier's probabilities); "
        f"flagged {flagged} ({how}) by the {summary['score']} score."
    ]
    if summary["truth_known"]:
        lines.append(
            f"Known truth: {100 * summary['realized_noise_rate']:.1f}% of the labels are wrong; "
            f"ROC AUC {summary['roc_auc']:.4f}, flagged precision {summary['precision']:.3f}, "
            f"recall {summary['recall']:.3f}."
        )
    with open(Path(out_dir) / issue_report.ISSUES, newline="") as f:
        rows = list(itertools.islice(csv.DictReader(f), top))
    if rows:
        where = next(iter(rows[0]))  # the first column: path, line, x_index, origin or source_index
        shown = issue_report.WHERE.get(where, "{}")
        lines.append(f"Most suspicious (by the {where!r} column of {issue_report.ISSUES}):")
        lines += [
            f"  {shown.format(r[where])}: labelled {r['observed_label']}, looks like {r['suggested_label']} "
            f"(score {r['score']})"
            for r in rows
        ]
    lines.append(f"Written: {out_dir}/ ({issue_report.ISSUES}, {issue_report.SUMMARY}, figures).")
    return "\n".join(lines)


def define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("run", None, "The work dir of a run of limit_tf.main, to read (required).")
    flags.DEFINE_alias("workdir", "run")
    flags.DEFINE_string(
        "score", None, f"Score: {', '.join(SCORES)} (default: limit for LIMIT runs, else self_confidence)."
    )
    flags.DEFINE_float("threshold", None, "Flag examples whose score is at least this.")
    flags.DEFINE_string(
        "budget", None, "Flag this many examples (int) or this fraction (float); default: the estimated number."
    )


if __name__ == "__main__":
    from limit_tf import cli

    cli.run(main, define_flags)
