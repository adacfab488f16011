r"""Small real data, labels made wrong: which defaults, and when LIMIT matters.

    python benchmarks/small_data.py                  # every dataset, every setting (about 40 min on 2 cores)
    python benchmarks/small_data.py --datasets=wine --settings=limit_beta10,ce

Data nobody here tuned on: the small datasets that scikit-learn ships,
written by ``limit_tf.sample_data`` as a user would have them (a CSV table
or an 8x8 PNG folder, a clean test file, wrong labels on purpose, the truth
beside them): digits as a table (64 pixel columns) and as a folder (30%
wrong), breast cancer (30 columns, 20% wrong), wine (13 columns, 25% wrong).
Each setting runs the README's two commands, ``python -m limit_tf.main``
(default protocol: up to 400 epochs, patience 100) and ``python -m
limit_tf.detection``, as subprocesses; the labels' truth then scores the
detection: ROC AUC of the score, precision and recall of the flagged
examples, the estimated share of wrong labels against the true one, clean
test accuracy. ``--settings`` also holds short runs of the default LIMIT
(fewer gradient steps) to set ``limit_tf.train.MIN_STEPS``.

Writes ``benchmarks/results/small_data.json`` (and prints a table); the
runs stay under ``--root``.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from absl import flags
from sklearn import metrics

from limit_tf import cli

HERE = Path(__file__).resolve().parent
DATASETS = {
    # name: (sample_data source, kind, noise rate, extra flags for limit_tf.main)
    "digits_csv": ("digits", "csv", 0.3, ()),
    "digits_folder": ("digits", "folder", 0.3, ("--image_size=28",)),
    "breast_cancer": ("breast_cancer", "csv", 0.2, ()),
    "wine": ("wine", "csv", 0.25, ()),
}
SETTINGS = {
    "ce": ("--method=ce",),
    "limit_beta1": ("--method=limit", "--beta=1"),
    "limit_beta3": ("--method=limit", "--beta=3"),
    "limit_beta10": ("--method=limit",),  # the default: LIMIT_L, beta 10
    "limit_beta30": ("--method=limit", "--beta=30"),
    "limit_g_beta10": ("--method=limit", "--predictor=gaussian"),
    # The default LIMIT cut short: how many gradient steps are enough (MIN_STEPS).
    "limit_30_epochs": ("--method=limit", "--epochs=30", "--patience=30"),
    "limit_100_epochs": ("--method=limit", "--epochs=100", "--patience=100"),
    # Smaller batches: more gradient steps per epoch on a table of about 100 rows.
    "limit_batch32": ("--method=limit", "--batch_size=32"),
    "limit_batch64": ("--method=limit", "--batch_size=64"),
    "limit_batch128": ("--method=limit", "--batch_size=128"),
    "limit_batch256": ("--method=limit", "--batch_size=256"),  # the default before auto batches
    "ce_batch32": ("--method=ce", "--batch_size=32"),
    "ce_batch256": ("--method=ce", "--batch_size=256"),
}
DEFAULT_SETTINGS = ("ce", "limit_beta1", "limit_beta3", "limit_beta10", "limit_beta30", "limit_g_beta10")

FLAGS = flags.FLAGS
flags.DEFINE_list("datasets", list(DATASETS), f"Datasets: {', '.join(DATASETS)}.")
flags.DEFINE_list("settings", list(DEFAULT_SETTINGS), f"Settings: {', '.join(SETTINGS)}.")
cli.define_shared_flags(
    root="benchmarks/runs/small_data", out=(str(HERE / "results" / "small_data.json"), "the results JSON.")
)
flags.DEFINE_integer(
    "noise_seed", 0, "Which examples are test, and which labels go wrong (sample_data's --noise_seed)."
)


def _run(args: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def make_data(root: Path, name: str) -> tuple[str, str, Path]:
    """Writes the dataset once; returns (--dataset, --test_data, truth file)."""
    source, kind, rate, _ = DATASETS[name]
    out = root / "data" / (f"{name}.csv" if kind == "csv" else name)
    test = root / "data" / (f"{name}_test.csv" if kind == "csv" else f"{name}_test")
    truth = Path(f"{out}.truth.csv")
    if not truth.is_file():
        _run(
            [
                "limit_tf.sample_data",
                f"--source={source}",
                f"--kind={kind}",
                f"--out={out}",
                f"--test_out={test}",
                f"--noise_rate={rate}",
                f"--noise_seed={FLAGS.noise_seed}",
                "--num_examples=100000",
            ]
        )
    return f"{kind}:{out}", str(test), truth


def score_detection(run: Path, truth_file: Path) -> dict:
    """The detection of ``run`` against the truth that sample_data wrote: the training split's rows (what the
    estimate counts), and ROC AUC over every row."""
    with open(truth_file, newline="") as f:
        wrong = {r["origin"]: r["given_label"] != r["true_label"] for r in csv.DictReader(f)}
    (issues,) = run.glob("detection_*/label_issues.csv")
    with open(issues, newline="") as f:
        every = list(csv.DictReader(f))  # every example given: the validation split's rows are cross-fitted
    rows = [r for r in every if r.get("split", "train") == "train"]
    where = next(iter(rows[0]))
    mask = np.asarray([wrong[r[where]] for r in rows])
    scores = np.asarray([float(r["score"]) for r in rows])
    every_mask = np.asarray([wrong[r[where]] for r in every])
    every_scores = np.asarray([float(r["score"]) for r in every])
    flagged = np.asarray([r["flagged"] == "1" for r in rows])
    summary = json.loads((issues.parent / "detection.json").read_text())
    return {
        "examples_scored": len(rows),
        "true_noise_rate": float(mask.mean()),
        "estimated_noise_rate": summary["estimated_noise_rate"],
        "estimate_error_points": 100 * (summary["estimated_noise_rate"] - float(mask.mean())),
        "roc_auc": float(metrics.roc_auc_score(mask, scores)),
        "files_scored": len(every),
        "roc_auc_every_file": float(metrics.roc_auc_score(every_mask, every_scores)),
        "flagged": int(flagged.sum()),
        "precision": float(mask[flagged].mean()) if flagged.any() else None,
        "recall": float(flagged[mask].mean()),
        "score": summary["score"],
    }


def main(argv) -> None:
    del argv
    root = Path(FLAGS.root)
    out = Path(FLAGS.out)
    results = json.loads(out.read_text()) if out.is_file() else {"runs": {}}
    for name in FLAGS.datasets:
        dataset, test, truth = make_data(root, name)
        for setting in FLAGS.settings:
            key = f"{name}/{setting}"
            if key in results["runs"]:
                continue
            run = root / "runs" / name / setting
            train_s = _run(
                [
                    "limit_tf.main",
                    f"--dataset={dataset}",
                    f"--test_data={test}",
                    f"--workdir={run}",
                    *DATASETS[name][3],
                    *SETTINGS[setting],
                ]
            )
            detect_s = _run(["limit_tf.detection", f"--workdir={run}"])
            res = json.loads((run / "results.json").read_text())
            row = {
                "test_accuracy": res["test_accuracy"],
                "best_epoch": res["best_epoch"],
                "epochs_run": res["epochs_run"],
                "train_examples": res["num_train_examples"],
                "batch_size": res.get("batch_size", 256),
                "flags": list(SETTINGS[setting]) + list(DATASETS[name][3]),
                "train_s": round(train_s, 1),
                "detect_s": round(detect_s, 1),
                **score_detection(run, truth),
            }
            results["runs"][key] = row
            print(
                f"{key}: test {100 * row['test_accuracy']:.1f}%, AUC {row['roc_auc']:.3f}, estimate "
                f"{100 * row['estimated_noise_rate']:.1f}% (true {100 * row['true_noise_rate']:.1f}%), precision "
                f"{row['precision'] or 0:.3f}, recall {row['recall']:.3f}, {row['train_s']:.0f} s",
                flush=True,
            )
            out.parent.mkdir(parents=True, exist_ok=True)
            results["versions"] = _versions()
            out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


def _versions() -> dict:
    from limit_tf import workdir

    return workdir.library_versions()


if __name__ == "__main__":
    cli.run(main)
