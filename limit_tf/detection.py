"""Finding mislabeled training examples (paper Sec. 4.1 and appendix C).

A score per example, higher = the observed label is more likely wrong:

- ``limit``: the distance between LIMIT's predicted and the cross-entropy
  gradient w.r.t. the logits, ``||g_pred - g_ce|| = ||y - s(q(x))||``
  (``../shared/DESIGN.md`` section 6). Needs a :class:`~limit_tf.LimitModel`.
- From any classifier (CE-trained ones too): ``cross_entropy`` (``-log
  s_y``), ``self_confidence`` (``1 - s_y``) and ``normalized_margin``
  (``max_{c != y} s_c - s_y``, in [-1, 1]).

:func:`rank` turns scores into ranked indices and a flag mask (threshold or
budget); :func:`evaluate` measures them against a known corruption mask with
scikit-learn's metrics; :func:`save` writes JSON / CSV and the figures
(drawn on ``matplotlib.figure.Figure`` objects; the pyplot backend is left
alone). :func:`detect_in_run` does all of it for a run's work dir, and
``python -m limit_tf.detection --workdir=RUN`` from the command line.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
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


def save(
    out_dir,
    detection: Detection,
    observed_labels,
    *,
    clean_labels=None,
    report: dict | None = None,
    images=None,
    score_name: str = "score",
    class_names=None,
) -> list[Path]:
    """Writes ``detection.json``, ``detection.csv`` and the PNG figures.

    The CSV has one row per example, most suspicious first: index, observed
    label, clean label (if known), score, rank, flagged.
    """
    from limit_tf import workdir

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    observed = np.asarray(observed_labels)
    rank_of = np.empty(len(detection.ranked), np.int64)
    rank_of[detection.ranked] = np.arange(len(detection.ranked))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["index", "observed_label", "clean_label", "score", "rank", "flagged"])
    for i in detection.ranked:
        clean = "" if clean_labels is None else int(clean_labels[i])
        writer.writerow(
            [
                int(i),
                int(observed[i]),
                clean,
                f"{detection.scores[i]:.6g}",
                int(rank_of[i]) + 1,
                int(detection.flagged[i]),
            ]
        )
    workdir.write_text(out / "detection.csv", buffer.getvalue())
    workdir.write_json(
        out / "detection.json", {"score": score_name, **(report or {}), "threshold": detection.threshold}
    )
    written = [out / "detection.csv", out / "detection.json"]
    names = list(class_names) if class_names is not None else [str(k) for k in range(int(observed.max()) + 1)]
    if clean_labels is not None:
        written.append(
            score_histogram(out / "score_histogram.png", detection, observed != np.asarray(clean_labels), score_name)
        )
    if images is not None:
        written.append(suspects_grid(out / "suspects_grid.png", detection, observed, images, names, clean_labels))
    return written


def score_histogram(path: Path, detection: Detection, corrupted: np.ndarray, score_name: str) -> Path:
    """Figures A1/A2: the scores of correct vs corrupted examples."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    bins = np.linspace(detection.scores.min(), detection.scores.max(), 60)
    for mask, what in ((~corrupted, "correct labels"), (corrupted, "corrupted labels")):
        ax.hist(detection.scores[mask], bins=bins, alpha=0.6, label=f"{what} ({mask.sum()})", density=True)
    ax.set(xlabel=score_name, ylabel="density", title="score of correct vs corrupted examples")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def suspects_grid(path: Path, detection: Detection, observed, images, class_names, clean_labels=None, per_class=8):
    """Figures 4/A3: the most suspicious examples of each observed class, titled with class names."""
    from matplotlib.figure import Figure

    classes = np.unique(observed)
    fig = Figure(figsize=(per_class * 1.2, len(classes) * 1.3))
    axes = fig.subplots(len(classes), per_class, squeeze=False)
    for row, c in enumerate(classes):
        suspects = [i for i in detection.ranked if observed[i] == c][:per_class]
        for col in range(per_class):
            ax = axes[row, col]
            ax.axis("off")
            if col < len(suspects):
                image = np.asarray(images[suspects[col]])
                ax.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None)
                true = "" if clean_labels is None else f"\n(true: {class_names[int(clean_labels[suspects[col]])]})"
                ax.set_title(f"{class_names[int(c)]}{true}", fontsize=6)
    fig.suptitle("most suspicious examples per observed label", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def load_trained_model(workdir_path):
    """The trained model of a run: its best epoch; for an unfinished run, the best so far (with a warning).

    Returns:
      ``(model, config, dataset)``.

    Raises:
      FileNotFoundError: the directory holds no run, or no trained model yet.
    """
    import keras
    from absl import logging

    from limit_tf import train, workdir
    from limit_tf.checkpoint import TrainingCheckpoint
    from limit_tf.config import ExperimentConfig

    run = workdir.RunDir(workdir_path)
    stored = run.config()
    if stored is None:
        raise FileNotFoundError(f"{run.path} is not a run's work dir ({workdir.CONFIG} is missing).")
    config = ExperimentConfig.from_dict(stored)
    dataset = train.load_data(config)
    if run.finished and run.file(workdir.BEST_MODEL).is_file():
        return keras.models.load_model(run.file(workdir.BEST_MODEL)), config, dataset
    import tensorflow as tf

    model = train.build_model(config, dataset, tf.distribute.get_strategy())
    if run.finished and run.file(workdir.BEST_WEIGHTS).is_file():
        model.load_weights(run.file(workdir.BEST_WEIGHTS))
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


def detect_in_run(
    workdir_path, *, score: str = "limit", threshold: float | None = None, budget=None, out_dir=None
) -> dict:
    """Scores the training set of a run and writes ``<workdir>/detection_<score>/``.

    Args:
      workdir_path: a run's work dir (``limit_tf.main``); an unfinished run
        is scored with its best epoch so far, with a warning.
      score: one of :data:`SCORES` (``limit`` needs a model with a q-network).
      threshold, budget: see :func:`rank` (default: budget = the run's realized noise rate).
      out_dir: where to write (default ``<workdir>/detection_<score>``).

    Returns:
      The metrics of :func:`evaluate` (the corruption mask is known for runs
      whose noise we injected).
    """
    from limit_tf import data as data_lib

    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; allowed: {', '.join(SCORES)}.")
    model, config, dataset = load_trained_model(workdir_path)
    inputs = data_lib.to_tf_dataset(dataset, "train", batch_size=1024, inputs_only=True)
    scores = score_examples(model, inputs, dataset.train.labels, score)
    if threshold is None and budget is None:
        budget = max(1, int(round(dataset.realized_noise_rate * len(dataset.train))))
    detection = rank(scores, threshold=threshold, budget=budget)
    report = evaluate(detection, dataset.train.noise_mask)
    save(
        out_dir or Path(workdir_path) / f"detection_{score}",
        detection,
        dataset.train.labels,
        clean_labels=dataset.train.clean_labels,
        report=report,
        images=dataset.train.x,
        score_name=score,
        class_names=dataset.class_names,
    )
    return report


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
    try:
        report = detect_in_run(f.workdir, score=f.score, threshold=f.threshold, budget=parse_budget(f.budget))
    except (FileNotFoundError, ValueError) as e:
        cli.fail(str(e))
    print(json.dumps(report, indent=2))


def define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("workdir", None, "A run's work dir.", required=True)
    flags.DEFINE_string("score", "limit", f"Score: {', '.join(SCORES)}.")
    flags.DEFINE_float("threshold", None, "Flag examples whose score is at least this.")
    flags.DEFINE_string(
        "budget", None, "Flag this many examples (int) or this fraction (float); default: the realized noise rate."
    )


if __name__ == "__main__":
    from limit_tf import cli

    cli.run(main, define_flags)
