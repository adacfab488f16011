r"""The paper's MNIST table (Table 1, uniform noise) on real data, on a CPU.

    python benchmarks/reproduce_mnist.py --data_dir=../shared/data            # everything
    python benchmarks/reproduce_mnist.py --cells=0.8:1000 --seeds=1 --epochs=50  # one cell, shrunk

Runs CE, LIMIT_G and LIMIT_L (both "-S", the paper's primary variants) in
the paper's protocol (48k/12k split, noisy validation, Adam 1e-3, batch 256,
best-noisy-validation epoch, clean test set) for the cells
p in {0.5, 0.8} x n in {1000, 10000}, over several seeds (the seed fixes the
weights, the batch order, the split, the subset and the noise), and prints
our mean +- std beside the paper's Tables 4-5. With several ``--betas`` the
beta of each LIMIT variant is chosen per cell by mean validation accuracy
over the seeds, as the paper does; the table reports the chosen one.

Every run is an ordinary work dir (``limit_tf.train``) under
``--root/e<epochs>_p<patience>/``: interrupting the script and starting it
again resumes the unfinished run and skips the finished ones, and runs made
by separate invocations (one cell each, say) are all reported. Results go
to ``--out`` as JSON and Markdown; they cover every finished run of the
same epochs/patience under ``--root``, not only this invocation's.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

from limit_tf import config as config_lib  # noqa: E402
from limit_tf import report, sweep  # noqa: E402
from limit_tf.main import fail  # noqa: E402

HERE = Path(__file__).resolve().parent
ALL_CELLS = ("0.5:1000", "0.8:1000", "0.5:10000", "0.8:10000")
METHODS = ("ce", "limit_g", "limit_l")

flags.DEFINE_string("data_dir", None, "Directory with mnist/*.gz (default: $LIMIT_DATA_DIR).")
flags.DEFINE_list("cells", list(ALL_CELLS), "Cells to run, as p:n (noise rate : training examples).")
flags.DEFINE_list("methods", list(METHODS), f"Variants to run: {', '.join(METHODS)}.")
flags.DEFINE_integer("seeds", 3, "Number of seeds (0, 1, ...); the paper uses 5.")
flags.DEFINE_integer("epochs", 400, "Maximum epochs (the paper: 400).")
flags.DEFINE_integer("patience", 100, "Early-stopping patience in epochs (the paper: 100).")
flags.DEFINE_list("betas", ["10"], "LIMIT beta(s); several: chosen per cell by mean validation accuracy.")
flags.DEFINE_string("root", str(HERE / "runs" / "reproduce_mnist"), "Where the run work dirs go.")
flags.DEFINE_string("out", str(HERE / "results" / "reproduce_mnist"), "Output path prefix (.json and .md added).")
flags.DEFINE_bool("report_only", False, "Only collect finished runs and write the table.")
FLAGS = flags.FLAGS


def parse_cells(values) -> list[tuple[float, int]]:
    cells = []
    for value in values:
        try:
            rate, n = value.split(":")
            cell = (float(rate), int(n))
        except ValueError:
            raise config_lib.ConfigError(
                f"--cells: {value!r} is not p:n (e.g. 0.8:1000); the paper's cells: {', '.join(ALL_CELLS)}."
            ) from None
        if (round(cell[0], 2), cell[1]) not in report.PAPER_MNIST_UNIFORM:
            raise config_lib.ConfigError(
                f"--cells: {value!r} is not a cell of the paper's MNIST table; allowed: {', '.join(ALL_CELLS)}."
            )
        cells.append(cell)
    return cells


def build_configs(cells, methods, seeds, epochs, patience, betas, data_dir, root) -> list[config_lib.ExperimentConfig]:
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise config_lib.ConfigError(f"--methods: {unknown[0]!r} is not allowed; allowed: {', '.join(METHODS)}.")
    if seeds < 1:
        raise config_lib.ConfigError(f"--seeds={seeds} is not allowed: it must be an integer >= 1.")
    base = config_lib.ExperimentConfig(
        workdir="reproduce", dataset="mnist", data_dir=data_dir, noise="uniform", epochs=epochs, patience=patience
    )
    configs = []
    for rate, n in cells:
        configs += sweep.sweep_configs(
            base,
            root=root,
            noise_rates=[rate],
            sizes=[n],
            variants=list(methods),
            seeds=list(range(seeds)),
            betas=betas,
        )
    for config in configs:
        config.validate()
    return configs


def summarize(root: Path) -> dict:
    """Every finished run under ``root``, grouped by cell and variant; betas chosen by validation."""
    runs = {}
    for workdir in report.find_runs(root):
        results = json.loads((workdir / "results.json").read_text())
        c = results["config"]
        key = (float(c["noise_rate"]), int(results["num_train_examples"]))
        variant = report.variant_of(c)
        beta = float(c["beta"]) if c["method"] == "limit" else None
        entry = runs.setdefault(key, {}).setdefault(variant, {}).setdefault(beta, [])
        entry.append(
            {
                "seed": c["seed"],
                "test_accuracy": results["test_accuracy"],
                "best_val_accuracy": results["best_val_accuracy"],
                "best_epoch": results["best_epoch"],
                "epochs_run": results["epochs_run"],
                "train_wall_time_s": results["train_wall_time_s"],
            }
        )
    cells = []
    for (rate, n), variants in sorted(runs.items()):
        cell = {"noise_rate": rate, "n": n, "methods": {}}
        for variant in sorted(variants, key=lambda v: METHODS.index(v) if v in METHODS else 99):
            by_beta = variants[variant]
            candidates = {beta: _stats(seeds) for beta, seeds in by_beta.items()}
            chosen = max(candidates, key=lambda b: (candidates[b]["val_mean"], -(b or 0)))
            stats = candidates[chosen]
            paper = report.paper_value("mnist", "uniform", rate, n, variant)
            stats.update(
                beta=chosen,
                betas_tried={str(b): round(s["val_mean"], 4) for b, s in candidates.items()}
                if chosen is not None
                else None,
                paper_mean=paper[0] if paper else None,
                paper_std=paper[1] if paper else None,
                gap=round(stats["mean"] - paper[0], 2) if paper else None,
                runs=sorted(by_beta[chosen], key=lambda r: r["seed"]),
            )
            cell["methods"][variant] = stats
        cells.append(cell)
    return {"cells": cells}


def _stats(seed_runs: list[dict]) -> dict:
    import numpy as np

    test = 100.0 * np.array([r["test_accuracy"] for r in seed_runs])
    val = np.array([r["best_val_accuracy"] for r in seed_runs])
    return {
        "mean": round(float(test.mean()), 2),
        "std": round(float(test.std(ddof=1)) if len(test) > 1 else 0.0, 2),
        "seeds": len(test),
        "val_mean": float(val.mean()),
        "best_epoch_mean": float(np.mean([r["best_epoch"] for r in seed_runs])),
        "wall_time_s_mean": float(np.mean([r["train_wall_time_s"] for r in seed_runs])),
    }


def to_markdown(summary: dict) -> str:
    s = summary["settings"]
    lines = [
        "# The paper's MNIST table (uniform noise) on this machine",
        "",
        f"Protocol: up to {s['epochs']} epochs, patience {s['patience']}, best-noisy-validation epoch, "
        "clean test set; test accuracy in %, mean +- std over seeds. "
        "Paper: Tables 4-5 (5 seeds, up to 400 epochs, patience 100).",
        "",
        "| p | n | method | ours | seeds | beta | best epoch (mean) | paper | ours - paper |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for cell in summary["cells"]:
        for variant, m in cell["methods"].items():
            label = report.PAPER_LABELS.get(variant, variant)
            paper = f"{m['paper_mean']:.1f} +- {m['paper_std']:.1f}" if m["paper_mean"] is not None else "-"
            gap = f"{m['gap']:+.1f}" if m["gap"] is not None else "-"
            beta = f"{m['beta']:g}" if m["beta"] is not None else "-"
            lines.append(
                f"| {cell['noise_rate']:g} | {cell['n']} | {label} | {m['mean']:.1f} +- {m['std']:.1f} | "
                f"{m['seeds']} | {beta} | {m['best_epoch_mean']:.0f} | {paper} | {gap} |"
            )
    lines.append("")
    return "\n".join(lines)


def write_outputs(root: Path, out: Path, settings: dict) -> dict:
    summary = summarize(root)
    summary["settings"] = settings
    out.parent.mkdir(parents=True, exist_ok=True)
    for suffix, text in ((".json", json.dumps(summary, indent=2)), (".md", to_markdown(summary))):
        path = out.with_name(out.name + suffix)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return summary


def main(argv) -> None:
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}; all settings are --flags.")
    root = Path(FLAGS.root) / f"e{FLAGS.epochs}_p{FLAGS.patience}"
    try:
        betas = [float(b) for b in FLAGS.betas]
    except ValueError:
        fail(f"--betas={','.join(FLAGS.betas)!r}: give numbers, e.g. 1,10,100.")
    try:
        cells = parse_cells(FLAGS.cells)
        configs = build_configs(
            cells, FLAGS.methods, FLAGS.seeds, FLAGS.epochs, FLAGS.patience, betas, FLAGS.data_dir, str(root)
        )
        if not FLAGS.report_only:
            from limit_tf import train

            train.prepare(configs[0])  # fails fast when the data is missing
    except config_lib.ConfigError as e:
        fail(str(e))
    settings = {
        "epochs": FLAGS.epochs,
        "patience": FLAGS.patience,
        "betas": betas,
        "root": str(root),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
    }
    if not FLAGS.report_only:
        from limit_tf import train

        settings["versions"] = train.library_versions()
        start = time.time()
        for i, config in enumerate(configs, 1):
            logging.info(
                "reproduce_mnist: run %d/%d (%.0f s so far): %s", i, len(configs), time.time() - start, config.workdir
            )
            train.run_experiment(config)
            write_outputs(root, Path(FLAGS.out), settings)  # the table grows as runs finish
    if not report.find_runs(root):
        fail(f"no finished run under {root}.")
    summary = write_outputs(root, Path(FLAGS.out), settings)
    print(to_markdown(summary))
    print(f"written: {FLAGS.out}.json, {FLAGS.out}.md")


if __name__ == "__main__":
    app.run(main)
