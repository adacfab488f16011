"""Finding mislabeled training examples (paper Sec. 4.1 and appendix C): functions of arrays.

Arrays in, arrays out; no files, no models (like cleanlab's ``rank`` and
``filter``). A score per example, higher = the observed label is more
likely wrong:

- ``limit``: the distance between LIMIT's predicted and the cross-entropy
  gradient w.r.t. the logits, ``||g_pred - g_ce|| = ||y - s(q(x))||``
  (the paper's appendix C; docs/usage.md, "Your own data"): from q's
  probabilities.
- From any classifier's probabilities (CE-trained ones too):
  ``cross_entropy`` (``-log s_y``), ``self_confidence`` (``1 - s_y``) and
  ``normalized_margin`` (``max_{c != y} s_c - s_y``, in [-1, 1]).

:func:`estimate_noise` estimates how many labels are wrong without being
told (confident learning's per-class thresholds, on probabilities that did
not learn the labels: LIMIT's classifier never sees them); :func:`rank`
turns scores into ranked indices and a flag mask (that many, or a threshold
or budget); :func:`evaluate` measures them against a known corruption mask
with scikit-learn's metrics; :func:`detect` does the three in a row.

A run's work dir is read by :mod:`limit_tf.runs` (``runs.detect_in_run``
scores a trained run and writes ``label_issues.csv``); from the command
line: ``python -m limit_tf.detection --run=RUN``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping

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


def estimate_interval(
    probs, labels, *, predictor_probs=None, level: float = 0.95, reps: int = 200, seed: int = 0
) -> tuple[float, float]:
    """A bootstrap interval for :func:`estimate_noise`'s share of wrong labels (with ``predictor_probs``:
    :func:`estimate_noise_from_both`'s).

    The examples are resampled with replacement ``reps`` times and the
    estimate is recomputed on each resample; the interval holds the middle
    ``level`` of those estimates. It measures how much the estimate moves
    with the sample, not how far a weak classifier biases it (the trust
    warning is for that).
    """
    p, y = _probs_and_observed(probs, labels)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level={level!r} is not allowed: it must be in (0, 1).")
    if not len(y):
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    q = None if predictor_probs is None else _probs_and_observed(predictor_probs, y)[0]

    def rate(pick):
        if q is None:
            return estimate_noise(p[pick], y[pick]).noise_rate
        return estimate_noise_from_both(p[pick], q[pick], y[pick])[0].noise_rate

    rates = [rate(pick) for pick in rng.integers(0, len(y), (int(reps), len(y)))]
    low, high = np.quantile(rates, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(low), float(high)


BOTH_ESTIMATOR = (
    "the midpoint of two confident-learning estimates that err in opposite directions: on the classifier's "
    "probabilities (LIMIT's classifier never fits the labels, so its own mistakes on correct labels count as wrong "
    "labels: high while it is weak) and on q's (q fits the labels, so what it memorized counts as correct: low, "
    "the more so the longer it trains). Chosen by measurement (docs/photos.md): on MNIST within 1.1 points like "
    "the others, on CIFAR-10 photographs within 2.6 points where the classifier's estimate was 5.6-11.1 high."
)


def estimate_noise_from_both(classifier_probs, predictor_probs, labels) -> tuple[NoiseEstimate, float, float]:
    """LIMIT's estimate (see :data:`BOTH_ESTIMATOR`): the classifier's :func:`estimate_noise` with its count
    replaced by the midpoint of the classifier's and q's; returns it and the two (low, high) shares."""
    by_classifier = estimate_noise(classifier_probs, labels)
    by_q = estimate_noise(predictor_probs, labels)
    n = len(np.asarray(labels).reshape(-1))
    num = int(round((by_classifier.num_issues + by_q.num_issues) / 2))
    low, high = sorted((by_q.noise_rate, by_classifier.noise_rate))
    return dataclasses.replace(by_classifier, num_issues=num, noise_rate=num / max(n, 1)), low, high


def temperature(probs, labels, *, low: float = 0.05, high: float = 20.0) -> float:
    """The temperature ``T`` that makes ``softmax(log p / T)`` fit ``labels`` best (lowest cross-entropy).

    Temperature scaling (Guo et al., 2017), fitted here on a held-out split
    (the validation split, whose labels carry the same noise as training);
    ``T > 1`` softens overconfident probabilities. A bounded scalar search
    over ``log T``.
    """
    from scipy import optimize

    p, y = _probs_and_observed(probs, labels)
    logits = np.log(np.clip(p, 1e-12, 1.0))

    def loss(log_t):
        z = logits / np.exp(log_t)
        z -= z.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]))

    found = optimize.minimize_scalar(loss, bounds=(np.log(low), np.log(high)), method="bounded")
    return float(np.exp(found.x))


def scaled(probs, t: float) -> np.ndarray:
    """``softmax(log p / t)``: probabilities at temperature ``t``."""
    z = np.log(np.clip(np.asarray(probs, np.float64), 1e-12, 1.0)) / float(t)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


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


# When not to trust a detection (measured on 29 runs whose truth was known: MNIST, scikit-learn's small tables,
# CIFAR-10 photographs; benchmarks/trust_check.py). A classifier too weak for its data counts its own mistakes
# on correct labels as wrong labels, so two things give it away: the clean accuracy that the noise estimate
# implies on the validation split is low, or the estimate itself is high. Of the runs under TRUSTED_ACCURACY or
# over TRUSTED_NOISE, all but one had a ranking or an estimate that was off (the exception: MNIST with 60% of the
# labels truly wrong); of the others, all but one were right (the exception: MNIST with 60% of the labels moved
# to the next class, which no label-free check can tell from the truth).
TRUSTED_ACCURACY = 0.75
TRUSTED_NOISE = 0.5
_STRONGER = "train a stronger network (longer, a network for the data, augmentation) before acting on this list"


def estimated_clean_accuracy(predicted, observed, joint) -> float:
    """How often the classifier's predictions are right about the *true* labels, estimated without them.

    ``joint`` is :func:`estimate_noise`'s ``[given, likely true]`` counts;
    its columns, normalized, estimate the noise ``G[y, t] = P(given = y |
    true = t)``. With noise that depends on the true class only, the
    (given label, prediction) frequencies of a held-out split are ``N = G
    M``, where ``M[t, p] = P(true = t, predicted = p)``: solving for ``M``
    and summing its diagonal estimates the clean accuracy from noisy labels
    (clipped to [0, 1]).
    """
    predicted = np.asarray(predicted, np.int64).reshape(-1)
    observed = np.asarray(observed, np.int64).reshape(-1)
    joint = np.asarray(joint, np.float64)
    if predicted.shape != observed.shape:
        raise ValueError(f"predicted {predicted.shape} and observed {observed.shape} labels do not match.")
    if not observed.size:
        return float("nan")
    k = len(joint)
    noisy = np.zeros((k, k))
    np.add.at(noisy, (observed, predicted), 1.0 / observed.size)
    columns = joint.sum(axis=0, keepdims=True)
    noise = np.divide(joint, columns, out=np.eye(k), where=columns > 0)
    clean_joint = np.linalg.lstsq(noise, noisy, rcond=None)[0]
    return float(np.clip(np.trace(clean_joint), 0.0, 1.0))


def confidence(probs) -> float:
    """The mean of the largest predicted probability: the accuracy a calibrated classifier expects of itself,
    without any label. Reported for reference only: it errs both ways (a CIFAR-10 LIMIT_L run at 40% clean
    accuracy: 0.84, overconfident; CE on scikit-learn's wine at 92%, early-stopped: 0.36)."""
    p = np.asarray(probs, np.float64)
    return float(p.max(axis=1).mean()) if p.size else float("nan")


def trust_warning(clean_accuracy: float | None, noise_rate: float | None = None) -> str | None:
    """A line for a person when the detection should not be acted on, else None.

    Args:
      clean_accuracy: :func:`estimated_clean_accuracy` on the validation split
        (None without one).
      noise_rate: the estimated share of wrong labels.
    """
    weak = clean_accuracy is not None and clean_accuracy < TRUSTED_ACCURACY
    high = noise_rate is not None and noise_rate > TRUSTED_NOISE
    if weak:
        also = f", and {100 * noise_rate:.1f}% of the labels are estimated wrong (over half)" if high else ""
        return (
            f"the classifier's estimated clean accuracy is only {math.floor(100 * clean_accuracy)}% (under "
            f"{100 * TRUSTED_ACCURACY:.0f}%){also}: many of the flags will be its own mistakes on correct labels, "
            f"and the estimated share of wrong labels is unreliable; {_STRONGER}."
        )
    if high:
        return (
            f"{100 * noise_rate:.1f}% of the labels are estimated wrong, over half: a classifier too weak for its "
            "data counts its own mistakes as wrong labels, which is far more common than labels this bad; unless "
            f"most of the most suspicious examples in suspects_grid.png are truly mislabeled, {_STRONGER}."
        )
    return None


def detect(
    scores,
    classifier_probs,
    labels,
    *,
    predictor_probs=None,
    threshold: float | None = None,
    budget=None,
    noise_mask=None,
) -> tuple[Detection, NoiseEstimate, dict]:
    """Ranks ``scores``, flags as many as :func:`estimate_noise` finds in ``classifier_probs`` (with LIMIT's
    ``predictor_probs``: :func:`estimate_noise_from_both`; or by ``threshold`` / ``budget``), and with a
    known ``noise_mask`` measures the result.

    Returns:
      ``(detection, estimate, summary)``; the summary holds the counts, the
      estimate (and with ``predictor_probs`` its ``estimate_bounds``) and,
      with ``noise_mask``, :func:`evaluate`'s metrics.
    """
    labels = np.asarray(labels)
    bounds = None
    if predictor_probs is None:
        estimate, estimator = estimate_noise(classifier_probs, labels), ESTIMATOR
    else:
        estimate, *bounds = estimate_noise_from_both(classifier_probs, predictor_probs, labels)
        estimator = BOTH_ESTIMATOR
    by_estimate = threshold is None and budget is None
    detection = rank(scores, threshold=threshold, budget=estimate.num_issues if by_estimate else budget)
    summary = {
        "num_examples": len(labels),
        "num_flagged": int(detection.flagged.sum()),
        "flagged_by": "estimate" if by_estimate else "budget or threshold",
        "estimated_issues": estimate.num_issues,
        "estimated_noise_rate": estimate.noise_rate,
        "estimator": estimator,
        "threshold": detection.threshold,
    }
    if bounds is not None:  # the two estimates the midpoint lies between (q's low, the classifier's high)
        summary["estimate_bounds"] = [float(b) for b in bounds]
    if noise_mask is not None:
        summary.update(evaluate(detection, noise_mask))
    return detection, estimate, summary


def score(name: str, probs: Mapping[str, np.ndarray], labels) -> np.ndarray:
    """The score ``name`` from ``{"classifier": ..., "predictor": ...}`` probabilities (q's for ``limit``)."""
    if name not in SCORES:
        raise ValueError(f"unknown score {name!r}; allowed: {', '.join(SCORES)}.")
    if name == "limit":
        if probs.get("predictor") is None:
            raise ValueError(
                "score 'limit' needs a model with a q-network (LIMIT); "
                "use cross_entropy, self_confidence or normalized_margin."
            )
        return limit_score(probs["predictor"], labels)
    return SCORES[name](probs["classifier"], labels)
