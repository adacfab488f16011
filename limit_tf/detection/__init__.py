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
not learn the labels: LIMIT's classifier never sees them) and, through its
confident joint, in which classes (:func:`class_budgets`); :func:`rank`
turns scores into ranked indices and a flag mask (that many, or a threshold
or budget, over all examples or class by class); :func:`evaluate` measures
them against a known corruption mask with scikit-learn's metrics;
:func:`detect` does the three in a row.

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
      ranked: indices from most to least suspicious: the flagged ones first,
        each part by :meth:`standing` (over all examples: the score; class by
        class: the place in the class's own ranking), ties by score.
      flagged: boolean mask (N,) of the examples flagged as mislabeled.
      threshold: the score at or above which an example is flagged (class by
        class: the lowest of ``class_thresholds``; ``inf`` when none is).
      class_thresholds: ``None``, or per observed class the score at or above
        which its examples are flagged (``inf``: none of them).
      labels: with ``class_thresholds``, the observed labels (N,).
    """

    scores: np.ndarray
    ranked: np.ndarray
    flagged: np.ndarray
    threshold: float
    class_thresholds: np.ndarray | None = None
    labels: np.ndarray | None = None

    def standing(self, scores=None, labels=None) -> np.ndarray:
        """How suspicious each example is, comparable across classes (higher = more): the order of ``ranked``.

        Over all examples, the score itself. Class by class, the example's place in its class's training
        ranking, counted in that class's flags: ``2 - r / b`` in the flagged part (``r`` examples of its
        class score higher, ``b`` are flagged), ``1 - (r - b) / (n - b)`` in the rest (``n`` examples), so
        that the list takes each class's most suspicious in turn, in proportion to its flags. Other
        examples (``scores`` and ``labels`` of a validation split) are placed where their scores fall among
        the training examples of their class. Without arguments: the ranked examples'.
        """
        s = self.scores if scores is None else np.asarray(scores, np.float64)
        if self.class_thresholds is None:
            return s
        y = self.labels if labels is None else _labels_for(self.class_thresholds, labels, s)
        out = np.empty(len(s))
        for c in range(len(self.class_thresholds)):
            members = self.labels == c
            ascending = np.sort(self.scores[members])
            n, b = len(ascending), int(self.flagged[members].sum())
            here = y == c
            higher = n - np.searchsorted(ascending, s[here], side="right")
            out[here] = np.where(higher < b, 2.0 - higher / max(b, 1), 1.0 - (higher - b) / max(n - b, 1))
        return out

    def apply(self, scores, labels=None) -> Detection:
        """Other examples (a validation split, scored by the same model) flagged at the same threshold(s)."""
        if self.class_thresholds is None:
            return rank(scores, threshold=self.threshold)
        return rank(scores, threshold=self.class_thresholds, labels=labels)

    def ranking_key(self) -> np.ndarray:
        """A number per example that orders them as ``ranked`` does (higher = more suspicious): the scores
        themselves for one threshold over all examples, else the position in ``ranked``."""
        if self.class_thresholds is None:
            return self.scores
        key = np.empty(len(self.scores))
        key[self.ranked] = np.arange(len(self.scores), 0, -1)
        return key


def _labels_for(per_class, labels, scores) -> np.ndarray:
    y = np.asarray(labels).astype(np.int64).reshape(-1)
    if y.shape != np.shape(scores):
        raise ValueError(f"labels {y.shape} and scores {np.shape(scores)} do not match: one label per score.")
    if y.size and (y.min() < 0 or y.max() >= len(per_class)):
        raise ValueError(f"labels span [{y.min()}, {y.max()}]: a per-class value is given for [0, {len(per_class)}).")
    return y


def _ranked(scores, standing, flagged) -> np.ndarray:
    # np.lexsort sorts by its last key first: flagged first, then by standing, then by score (all descending).
    return np.lexsort((-scores, -standing, ~flagged))


def rank(scores, *, threshold=None, budget=None, labels=None) -> Detection:
    """Ranks examples and flags those at or above ``threshold``, or the top ``budget``, over all examples or,
    with ``labels``, class by class.

    Args:
      scores: (N,) scores, higher = more suspicious.
      threshold: flag scores >= threshold (``inf``: none). With ``labels``,
        one per class: an example is flagged at its observed class's.
      budget: flag this many (an int) or this fraction (a float in (0, 1]) of
        the most suspicious examples. With ``labels``, a count per class: the
        most suspicious that many of the examples labelled with it.
      labels: (N,) observed labels, for a per-class ``threshold`` or
        ``budget``. Exactly one of threshold and budget.
    """
    s = np.asarray(scores, np.float64)
    if s.ndim != 1 or not np.all(np.isfinite(s)):
        raise ValueError("scores must be a 1-D array of finite numbers.")
    if (threshold is None) == (budget is None):
        raise ValueError("give exactly one of threshold= and budget=.")
    if labels is not None:
        return _rank_by_class(s, threshold, budget, labels)
    if np.ndim(threshold) or np.ndim(budget):
        raise ValueError("a threshold or budget per class needs labels= (the observed label of each score).")
    if threshold is not None and (np.isnan(threshold) or threshold == -np.inf):
        raise ValueError(f"threshold={threshold!r} is not allowed: it must be a number (inf: flag none).")
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


def _rank_by_class(s: np.ndarray, threshold, budget, labels) -> Detection:
    per_class = np.asarray(threshold if budget is None else budget)
    if per_class.ndim != 1 or not per_class.size:
        raise ValueError(f"with labels=, give one {'threshold' if budget is None else 'budget'} per class.")
    y = _labels_for(per_class, labels, s)
    k = len(per_class)
    flagged = np.zeros(len(s), bool)
    if budget is not None:
        sizes = np.bincount(y, minlength=k)
        counts = per_class.astype(np.int64)
        if not np.array_equal(counts, per_class) or np.any(counts < 0) or np.any(counts > sizes):
            raise ValueError(
                f"budget={per_class.tolist()} is not allowed: per class, a count between 0 and its "
                f"number of examples ({sizes.tolist()})."
            )
        thresholds = np.full(k, np.inf)
        for c in np.flatnonzero(counts):
            members = np.flatnonzero(y == c)
            top = members[np.argsort(-s[members], kind="stable")[: counts[c]]]
            flagged[top] = True
            thresholds[c] = s[top[-1]]
    else:
        thresholds = per_class.astype(np.float64)
        if np.any(np.isnan(thresholds)) or np.any(thresholds == -np.inf):
            raise ValueError(f"threshold={thresholds.tolist()} is not allowed: numbers (inf: flag none of a class).")
        flagged = s >= thresholds[y]
    finite = thresholds[np.isfinite(thresholds)]
    found = Detection(
        scores=s,
        ranked=np.arange(len(s)),
        flagged=flagged,
        threshold=float(finite.min()) if finite.size else float("inf"),
        class_thresholds=thresholds,
        labels=y,
    )
    return dataclasses.replace(found, ranked=_ranked(s, found.standing(), flagged))


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


def class_budgets(estimate: NoiseEstimate, labels) -> np.ndarray:
    """Per observed class, how many of its examples to flag: ``estimate.num_issues`` shared out over the
    classes like the off-diagonal row sums of its confident joint (the estimated wrong labels *given* each
    class), rounded so that they add up to the estimate (largest remainders) and capped at the class sizes.

    Flagging class by class puts the flags where the estimate finds the wrong labels: with noise that hits
    some classes (a cat filed as a dog), a single threshold over all examples flags the hard examples of
    every class instead (docs/usage.md §7 and ``benchmarks/flagging.py`` have the measurements).
    """
    y = np.asarray(labels).astype(np.int64).reshape(-1)
    joint = np.asarray(estimate.joint, np.float64)
    k = len(joint)
    sizes = np.bincount(y, minlength=k)
    if len(sizes) != k:
        raise ValueError(f"labels span [0, {len(sizes) - 1}]: the estimate's joint covers [0, {k}).")
    wrong = np.clip(joint.sum(axis=1) - np.diag(joint), 0.0, None)
    if wrong.sum() <= 0:  # nothing off the diagonal (an estimate replaced by another's count): by class size
        wrong = sizes.astype(np.float64)
    total = min(int(estimate.num_issues), int(sizes.sum()))
    share = np.minimum(total * wrong / max(wrong.sum(), 1e-12), sizes)
    counts = np.floor(share).astype(np.int64)
    order = np.argsort(counts - share, kind="stable")  # the largest remainders first
    while counts.sum() < total:  # total <= sizes.sum(): some class always has room
        room = order[counts[order] < sizes[order]]
        counts[room[: total - counts.sum()]] += 1
    return counts


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

    Returns ROC AUC and average precision of the ranking (``ranked``; over
    all examples, the scores'), precision / recall / F1 of the flags,
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
        key = detection.ranking_key()  # the ranking as a person reads it (class by class: by standing)
        out["roc_auc"] = float(skm.roc_auc_score(truth, key))
        out["average_precision"] = float(skm.average_precision_score(truth, key))
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
    per_class: bool = True,
) -> tuple[Detection, NoiseEstimate, dict]:
    """Ranks ``scores``, flags as many as :func:`estimate_noise` finds in ``classifier_probs`` (with LIMIT's
    ``predictor_probs``: :func:`estimate_noise_from_both`; or by ``threshold`` / ``budget``), and with a
    known ``noise_mask`` measures the result.

    ``per_class``: flag the estimated count class by class (:func:`class_budgets`), each class's most
    suspicious; otherwise the most suspicious over all examples. A ``threshold`` or ``budget`` is always
    applied over all examples.

    Returns:
      ``(detection, estimate, summary)``; the summary holds the counts (per observed class too), the
      estimate (and with ``predictor_probs`` its ``estimate_bounds``) and, with ``noise_mask``,
      :func:`evaluate`'s metrics.
    """
    labels = np.asarray(labels)
    bounds = None
    if predictor_probs is None:
        estimate, estimator = estimate_noise(classifier_probs, labels), ESTIMATOR
    else:
        estimate, *bounds = estimate_noise_from_both(classifier_probs, predictor_probs, labels)
        estimator = BOTH_ESTIMATOR
    by_estimate = threshold is None and budget is None
    if by_estimate and per_class:
        detection = rank(scores, budget=class_budgets(estimate, labels), labels=labels)
    else:
        detection = rank(scores, threshold=threshold, budget=estimate.num_issues if by_estimate else budget)
    k = len(estimate.joint)
    summary = {
        "num_examples": len(labels),
        "num_flagged": int(detection.flagged.sum()),
        "flagged_by": ("estimate, class by class" if per_class else "estimate")
        if by_estimate
        else "budget or threshold",
        "flagged_per_class": np.bincount(labels[detection.flagged].astype(np.int64), minlength=k).tolist(),
        "estimated_issues": estimate.num_issues,
        "estimated_noise_rate": estimate.noise_rate,
        "estimator": estimator,
        "threshold": detection.threshold,
    }
    if detection.class_thresholds is not None:
        summary["class_thresholds"] = [float(t) if np.isfinite(t) else None for t in detection.class_thresholds]
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
