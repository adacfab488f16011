r"""Finding wrong labels: LIMIT's score against cross-validated CE scores and confident learning.

    python benchmarks/detection.py --data_dir=../shared/data                  # p in {0.5, 0.8}, n = 10,000, 3 seeds
    python benchmarks/detection.py --noise_rates=0.8 --seeds=1 --epochs=10          # smaller

On MNIST with uniform noise (the paper's protocol, ``--num_train_examples``
training examples), per noise rate and seed:

- **LIMIT**: a LIMIT_L run (``--beta``), then ``limit_tf.detection``: the
  ``limit`` score ``||y - s(q(x))||`` ranks the examples, and as many are
  flagged as the estimate from the run's classifier says (confident
  learning's per-class thresholds on probabilities that never saw the labels).
- **CE, cross-validated**: ``--folds`` CE runs, each trained on the other
  folds (best noisy-validation epoch); the held-out fold's probabilities
  give the ``self_confidence`` and ``normalized_margin`` scores, flagged by
  the same estimator on those probabilities;
- **cleanlab** (when installed; ``pip install cleanlab``, not a requirement
  of the package): ``cleanlab.filter.find_label_issues`` on the same
  cross-validated probabilities.

Reported: ROC AUC and average precision of each score, the flagged set's
precision and recall, and the estimated vs the realized noise rate. Every
training is an ordinary work dir under ``--root`` (resumable); results go
to ``--out`` (.json and .md).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from limit_tf import cli, methods, workdir

HERE = Path(__file__).resolve().parent
FLAGS = cli.FLAGS
DEFAULTS = {"num_train_examples": 10_000, "epochs": 30, "patience": 30, "beta": 10.0, "predictor": "laplace"}


def define_flags() -> None:
    from absl import flags

    cli.define_config_flags(
        exclude=("workdir", "method", "sample", "noise_rate", "seed", "noise_seed", "clean_from"), defaults=DEFAULTS
    )
    cli.define_shared_flags(noise_rates=["0.5", "0.8"], seeds=3)
    flags.DEFINE_integer("folds", 5, "Cross-validation folds for the CE probabilities.")
    cli.define_shared_flags(
        root=str(HERE / "runs" / "detection"),
        out=(str(HERE / "results" / "detection"), "a path prefix (.json and .md added)."),
    )


def _flag_metrics(flagged: np.ndarray, mask: np.ndarray) -> dict:
    tp = float((flagged & mask).sum())
    return {
        "num_flagged": int(flagged.sum()),
        "precision": tp / max(flagged.sum(), 1),
        "recall": tp / max(mask.sum(), 1),
        "estimated_noise_rate": float(flagged.mean()),
    }


def _score_metrics(scores: np.ndarray, mask: np.ndarray) -> dict:
    from sklearn import metrics as skm

    return {
        "roc_auc": float(skm.roc_auc_score(mask, scores)),
        "average_precision": float(skm.average_precision_score(mask, scores)),
    }


def cross_validated_probabilities(base, dataset, folds: int, root: Path) -> np.ndarray:
    """Held-out CE probabilities for every training example (one CE run per fold)."""
    import keras
    import tensorflow as tf

    from limit_tf import data as data_lib
    from limit_tf import train

    n = len(dataset.train)
    order = np.random.default_rng(base.noise_seed).permutation(n)
    probs = np.zeros((n, dataset.num_classes))
    for k, held_out in enumerate(np.array_split(order, folds)):
        keep = np.setdiff1d(np.arange(n), held_out)
        part = dataclasses.replace(
            dataset,
            train=data_lib.Split(
                *(getattr(dataset.train, f)[keep] for f in ("x", "labels", "clean_labels", "source_indices"))
            ),
        )
        config = base.replace(method=methods.CE, workdir=str(root / f"ce_fold{k}"))
        train.run_experiment(config, dataset=part)
        model = keras.models.load_model(Path(config.workdir) / workdir.BEST_MODEL)
        held = dataclasses.replace(
            dataset,
            train=data_lib.Split(
                *(getattr(dataset.train, f)[held_out] for f in ("x", "labels", "clean_labels", "source_indices"))
            ),
        )
        logits = model.predict(data_lib.to_tf_dataset(held, "train", batch_size=1024, inputs_only=True), verbose=0)
        probs[held_out] = tf.nn.softmax(logits).numpy()
    return probs


def one_cell(base, root: Path) -> dict:
    from limit_tf import detection, runs, train

    dataset = runs.load_data(base)
    mask = dataset.train.noise_mask
    labels = dataset.train.labels
    out = {"noise_rate": base.noise_rate, "seed": base.seed, "realized_noise_rate": float(mask.mean()), "methods": {}}
    limit = base.replace(method=methods.LIMIT, workdir=str(root / "limit_l"))
    train.run_experiment(limit, dataset=dataset)
    summary = runs.detect_in_run(limit.workdir, score="limit")
    out["methods"]["LIMIT_L (limit score)"] = {
        "roc_auc": summary["roc_auc"],
        "average_precision": summary["average_precision"],
        "precision": summary["precision"],
        "recall": summary["recall"],
        "num_flagged": summary["num_flagged"],
        "estimated_noise_rate": summary["estimated_noise_rate"],
    }
    probs = cross_validated_probabilities(base, dataset, FLAGS.folds, root)
    estimate = detection.estimate_noise(probs, labels)
    for name in ("self_confidence", "normalized_margin"):
        scores = detection.SCORES[name](probs, labels)
        flagged = detection.rank(scores, budget=estimate.num_issues).flagged
        out["methods"][f"CE cross-validated ({name})"] = {
            **_score_metrics(scores, mask),
            **_flag_metrics(flagged, mask),
        }
    try:
        import cleanlab
        from cleanlab.filter import find_label_issues
    except ImportError:
        out["methods"]["cleanlab find_label_issues"] = "not installed (pip install cleanlab)"
    else:
        out["cleanlab_version"] = cleanlab.__version__
        flagged = find_label_issues(labels=labels, pred_probs=probs)
        ranking = detection.self_confidence_score(probs, labels)
        out["methods"]["cleanlab find_label_issues"] = {**_score_metrics(ranking, mask), **_flag_metrics(flagged, mask)}
    return out


def _stat(values) -> str:
    values = np.asarray(values, float)
    return f"{values.mean():.4f} +- {values.std(ddof=1) if len(values) > 1 else 0:.4f}"


def to_markdown(cells: list[dict]) -> str:
    lines = [
        "| p | method | ROC AUC | average precision | flagged precision | flagged recall | estimated noise rate | realized |",
        "|---|---|---|---|---|---|---|---|",
    ]
    by_key = {}
    for cell in cells:
        for name, m in cell["methods"].items():
            if isinstance(m, dict):
                by_key.setdefault((cell["noise_rate"], name), []).append({**m, "realized": cell["realized_noise_rate"]})
    for (rate, name), runs in sorted(by_key.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        keys = ("roc_auc", "average_precision", "precision", "recall", "estimated_noise_rate", "realized")
        lines.append(f"| {rate:g} | {name} | " + " | ".join(_stat([r[k] for r in runs]) for k in keys) + " |")
    return (
        "\n".join(lines)
        + f"\n\n{len({(c['noise_rate'], c['seed']) for c in cells})} (p, seed) cells; mean +- std over seeds.\n"
    )


def main(argv) -> None:
    del argv
    import cells  # beside this script

    base = cli.config_from_flags(workdir="detection")
    cells.run_from_flags(base, one_cell, to_markdown, extra={"folds": FLAGS.folds})


if __name__ == "__main__":
    cli.run(main, define_flags)
