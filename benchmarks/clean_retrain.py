r"""Robust training or sample selection? CE and LIMIT, before and after cleaning with LIMIT's detection.

    python benchmarks/clean_retrain.py --data_dir=../shared/data              # p in {0.5, 0.8}, n = 10,000, 3 seeds
    python benchmarks/clean_retrain.py --noise_rates=0.8 --seeds=1 --epochs=10      # smaller

On MNIST with uniform noise, per noise rate and seed, four runs of the
paper's protocol (clean test accuracy at the best noisy-validation epoch):
CE; LIMIT_L (``--beta``); CE trained on the training data cleaned with
the LIMIT_L run's detection (``--clean_from``, ``--clean``: ``drop`` the
flagged examples or ``relabel`` them); and LIMIT_L on the same cleaned data.
The flags come from ``limit_tf.detection`` with its defaults (the ``limit``
score, as many as the estimate says), so nothing is told the noise rate.
Every run is an ordinary work dir under ``--root`` (resumable); the table
goes to ``--out`` (.json and .md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from limit_tf import cli, methods

HERE = Path(__file__).resolve().parent
FLAGS = cli.FLAGS
DEFAULTS = {"num_train_examples": 10_000, "epochs": 30, "patience": 30, "beta": 10.0, "predictor": "laplace"}
ROWS = ("CE", "LIMIT_L", "CE after cleaning", "LIMIT_L after cleaning")


def define_flags() -> None:

    cli.define_config_flags(
        exclude=("workdir", "method", "sample", "noise_rate", "seed", "noise_seed", "clean_from"), defaults=DEFAULTS
    )
    cli.define_shared_flags(noise_rates=["0.5", "0.8"], seeds=3)
    cli.define_shared_flags(
        root=str(HERE / "runs" / "clean_retrain"),
        out=(str(HERE / "results" / "clean_retrain"), "a path prefix (.json and .md added)."),
    )


def one_cell(base, root: Path) -> dict:
    from limit_tf import train

    ce = base.replace(method=methods.CE, workdir=str(root / "ce"))
    limit = base.replace(method=methods.LIMIT, workdir=str(root / "limit_l"))
    runs = {"CE": ce, "LIMIT_L": limit}
    results = {name: train.run_experiment(config) for name, config in runs.items()}
    for name, config in (("CE after cleaning", ce), ("LIMIT_L after cleaning", limit)):
        cleaned = config.replace(clean_from=limit.workdir, workdir=f"{config.workdir}_cleaned_{base.clean}")
        results[name] = train.run_experiment(cleaned)
    used = results["CE after cleaning"]["num_train_examples_used"]
    return {
        "noise_rate": base.noise_rate,
        "seed": base.seed,
        "test_accuracy": {name: r["test_accuracy"] for name, r in results.items()},
        "best_epoch": {name: r["best_epoch"] for name, r in results.items()},
        "train_examples_after_cleaning": used,
        "realized_noise_rate": results["CE"]["realized_noise_rate"],
    }


def to_markdown(cells: list[dict], clean: str) -> str:
    lines = [f"| p | {' | '.join(ROWS)} | examples kept ({clean}) |", "|---|" + "---|" * (len(ROWS) + 1)]
    for rate in sorted({c["noise_rate"] for c in cells}):
        group = [c for c in cells if c["noise_rate"] == rate]

        def stat(values):
            values = 100.0 * np.asarray(values, float)
            return f"{values.mean():.1f} +- {values.std(ddof=1) if len(values) > 1 else 0:.1f}"

        kept = np.mean([c["train_examples_after_cleaning"] for c in group])
        lines.append(
            f"| {rate:g} | "
            + " | ".join(stat([c["test_accuracy"][r] for c in group]) for r in ROWS)
            + f" | {kept:.0f} |"
        )
    return (
        "\n".join(lines)
        + f"\n\nClean test accuracy %, mean +- std over {len(cells) // max(len({c['noise_rate'] for c in cells}), 1)} seeds.\n"
    )


def main(argv) -> None:
    del argv
    import cells  # beside this script

    base = cli.config_from_flags(workdir="clean_retrain")
    cells.run_from_flags(base, one_cell, lambda done: to_markdown(done, base.clean))


if __name__ == "__main__":
    cli.run(main, define_flags)
