r"""How many labels are wrong? The noise-rate estimators side by side, on runs with a known truth.

    python benchmarks/noise_estimate.py --data_dir=../shared/data              # MNIST, n = 5,000, 20 epochs
    python benchmarks/noise_estimate.py --noise_rates=0.4 --noises=uniform --seeds=1

Per noise model (``--noises``: ``uniform``, ``next_class``, ...), noise rate
and seed, one LIMIT run at the defaults (``--method=limit``: LIMIT_L,
beta 10) and its detection (``limit_tf.runs.detect_in_run``), which records
every estimator (``detection.json``'s ``estimates``):

- ``classifier``: confident learning on the classifier's probabilities of
  the training split (what detection flags by);
- ``classifier_calibrated``: the same after temperature scaling fitted on
  the (noisy) validation split;
- ``q``: confident learning on q's probabilities.

Against the realized share of wrong labels: the error in points per
estimator, and the mean absolute error per estimator over all cells. Every
run is an ordinary work dir under ``--root`` (resumable); the table goes to
``--out`` (.json and .md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from limit_tf import cli, methods

HERE = Path(__file__).resolve().parent
FLAGS = cli.FLAGS
DEFAULTS = {"num_train_examples": 5_000, "epochs": 20, "patience": 20}
ESTIMATORS = ("classifier", "classifier_calibrated", "q")


def define_flags() -> None:
    from absl import flags

    cli.define_config_flags(
        exclude=("workdir", "method", "noise", "noise_rate", "seed", "noise_seed"), defaults=DEFAULTS
    )
    cli.define_shared_flags(noise_rates=["0.2", "0.4", "0.6"], seeds=1)
    cli.define_shared_flags(
        root=str(HERE / "runs" / "noise_estimate"),
        out=(str(HERE / "results" / "noise_estimate"), "a path prefix (.json and .md added)."),
    )
    flags.DEFINE_list("noises", ["uniform", "next_class"], "Noise models, each at every --noise_rates.")


def one_cell(base, root: Path) -> dict:
    from limit_tf import runs, train

    config = base.replace(method=methods.LIMIT, workdir=str(root / "limit"))
    results = train.run_experiment(config)
    summary = runs.detect_in_run(config.workdir)
    return {
        "noise": base.noise,
        "noise_rate": base.noise_rate,
        "seed": base.seed,
        "test_accuracy": results["test_accuracy"],
        "realized_noise_rate": summary["realized_noise_rate"],
        "estimates": summary["estimates"],
        "roc_auc": summary["roc_auc"],
        "validation_roc_auc": summary.get("validation_roc_auc"),
        "estimated_clean_accuracy": summary["estimated_clean_accuracy"],
    }


def to_markdown(cells: list[dict]) -> str:
    lines = [
        "| noise | p | realized | " + " | ".join(ESTIMATORS) + " | clean test | ROC AUC (train / validation) |",
        "|---|---|---|" + "---|" * len(ESTIMATORS) + "---|---|",
    ]
    errors = {name: [] for name in ESTIMATORS}
    for c in cells:
        shown = []
        for name in ESTIMATORS:
            value = c["estimates"].get(name)
            if value is None:
                shown.append("-")
                continue
            error = 100 * (value - c["realized_noise_rate"])
            errors[name].append(abs(error))
            shown.append(f"{100 * value:.1f} ({error:+.1f})")
        lines.append(
            f"| {c['noise']} | {c['noise_rate']:g} | {100 * c['realized_noise_rate']:.1f} | "
            + " | ".join(shown)
            + f" | {100 * c['test_accuracy']:.1f} | {c['roc_auc']:.3f} / {c['validation_roc_auc'] or float('nan'):.3f} |"
        )
    mean = " | ".join(f"{np.mean(errors[n]):.1f}" if errors[n] else "-" for n in ESTIMATORS)
    lines.append(f"| mean absolute error (points) | | | {mean} | | |")
    return "\n".join(lines) + "\n\nEstimated share of wrong labels in %, (error in points).\n"


def main(argv) -> None:
    del argv
    import cells  # beside this script

    done = []
    for noise in FLAGS.noises:
        base = cli.config_from_flags(workdir="noise_estimate", noise=noise)
        out = f"{FLAGS.out}_{noise}"
        done += cells.run_cells(
            base,
            one_cell,
            rates=FLAGS.noise_rates,
            seeds=FLAGS.seeds,
            root=str(Path(FLAGS.root) / noise),
            out=out,
            to_markdown=to_markdown,
        )
    print(to_markdown(done))


if __name__ == "__main__":
    cli.run(main, define_flags)
