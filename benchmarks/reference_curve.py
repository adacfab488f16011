r"""LIMIT_L beside the authors' code on one cell: MNIST, uniform p = 0.8, n = 10,000, beta = 10, 30 epochs.

    LIMIT_DATA_DIR=../shared/data python benchmarks/reference_curve.py              # trains what is missing
    python benchmarks/reference_curve.py --root=benchmarks/runs/mnist_n10000         # the detection benchmark's runs

Our runs are the runner's (``limit_tf.train.run_experiment``, the reference
q-network, ``--track_test_accuracy`` so that the clean test curve exists)
under ``--root/p0.8_seed{S}/limit_l_curve``, trained when missing; with
``--no_train``, a run of the same cell without the test curve
(``.../limit_l``, as ``detection.py`` leaves it) gives the validation curve
and the test accuracy at the best epoch. The authors'
figures are ``../shared/reference/limit_l_mnist_u80_n10000_authors_code.json``
(their PyTorch code at tag v0.1, 3 seeds). Writes ``--out``.json and .png:
mean (and per-seed) noisy-validation and clean-test accuracy per epoch, and
the test accuracy at the best validation epoch.

``--draw=authors`` trains ours on the authors' own split, subset and noise
for each seed (their ``modules/data_utils.py`` at v0.1 draws them from
numpy's legacy global RNG: a permutation of the 60,000 training images,
the last 12,000 for validation, 10,000 of the rest by
``np.random.choice(..., replace=False)``, then one
``np.random.choice(10, 1, p=T[label])`` per training and then per
validation example), under ``.../limit_l_curve_authors_draw``; only the
weights and the batch order then differ between the two codes' seeds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

from limit_tf import cli  # noqa: E402

FLAGS = cli.FLAGS
REFERENCE = HERE.parent.parent / "shared" / "reference" / "limit_l_mnist_u80_n10000_authors_code.json"
CELL = {
    "dataset": "mnist",
    "noise": "uniform",
    "noise_rate": 0.8,
    "num_train_examples": 10_000,
    "epochs": 30,
    "patience": 30,
    "method": "limit",
    "predictor": "laplace",
    "beta": 10.0,
}


def authors_draw(dataset, seed: int, data_dir: str | None):
    """``dataset`` with the split, subset and noisy labels that the authors' code draws for ``seed``.

    The same calls, in the same order, on numpy's legacy global RNG as
    their ``load_mnist_datasets``; the images and clean labels are ours
    (the same files, in file order).
    """
    import dataclasses

    from limit_tf import data

    raw = data.load_raw("mnist", data_dir)  # the 60,000 training images and labels, in file order
    x, clean = raw.x_train, np.asarray(raw.y_train, np.int64)
    t = dataset.transition_matrix
    rng = np.random.RandomState(seed)  # == np.random.seed(seed), then the same np.random.* calls
    perm = rng.permutation(len(clean))
    train_part = int((1 - 0.2) * len(clean))
    train_idx = rng.choice(perm[:train_part], len(dataset.train), replace=False)
    val_idx = perm[train_part:]
    labels = {}
    for name, idx in (("train", train_idx), ("validation", val_idx)):
        labels[name] = np.array([int(rng.choice(len(t), 1, p=t[clean[i]])[0]) for i in idx], np.int64)

    def split(name, idx):
        return data.Split(x[idx], labels[name], clean[idx], idx.astype(np.int64))

    return dataclasses.replace(dataset, train=split("train", train_idx), validation=split("validation", val_idx))


def our_run(root: Path, seed: int, data_dir: str | None, train_missing: bool, draw: str = "ours") -> dict:
    from limit_tf import train, workdir
    from limit_tf.config import ExperimentConfig

    cell = root / f"p0.8_seed{seed}"
    # With the test curve if there is one (or one may be trained), else without it.
    names = ("limit_l_curve",) if train_missing else ("limit_l_curve", "limit_l")
    if draw == "authors":
        names = ("limit_l_curve_authors_draw",)
    run = next((workdir.RunDir(cell / n) for n in names if workdir.RunDir(cell / n).results()), None)
    if run is None:
        if not train_missing:
            raise SystemExit(f"error: no finished LIMIT_L run under {cell}; drop --no_train to train one.")
        config = ExperimentConfig(
            workdir=str(cell / names[0]),
            data_dir=data_dir,
            seed=seed,
            noise_seed=seed,
            track_test_accuracy=True,
            **CELL,
        )
        dataset = train.prepare(config)
        train.run_experiment(config, dataset=authors_draw(dataset, seed, data_dir) if draw == "authors" else dataset)
        run = workdir.RunDir(config.workdir)
    results, metrics = run.results(), run.metrics()
    config = results["config"]
    differs = {k: (config[k], v) for k, v in CELL.items() if config[k] != v}
    if differs:
        raise SystemExit(f"error: {run.path} is another cell: {differs} (ours, wanted).")
    return {
        "seed": seed,
        "draw": draw,
        "workdir": str(run.path),
        "q_architecture": config.get("q_architecture"),
        "best_epoch": results["best_epoch"] + 1,
        "test_accuracy_at_best_val": results["test_accuracy"],
        "val_accuracy_noisy": [m["val_accuracy"] for m in metrics],
        "test_accuracy": [m.get("test_accuracy_monitor") for m in metrics],
    }


def plot(ours: list[dict], reference: dict, path: Path, draw: str = "ours") -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    for ax, key, title in (
        (axes[0], "val_accuracy_noisy", "validation accuracy (noisy labels)"),
        (axes[1], "test_accuracy", "clean test accuracy"),
    ):
        for runs, name, color in ((reference["runs"], "authors' code", "tab:gray"), (ours, "limit-tf", "tab:red")):
            curves = [r[key] for r in runs if r[key] and None not in r[key]]
            if not curves:
                continue
            curves = np.asarray(curves, float)
            epochs = np.arange(1, curves.shape[1] + 1)
            for c in curves:
                ax.plot(epochs, c, color=color, alpha=0.25, linewidth=0.8)
            ax.plot(epochs, curves.mean(0), color=color, label=f"{name}: mean of {len(curves)} seeds")
        ax.set(title=title, xlabel="epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[1].set_ylim(0.5, 1.0)
    data = (
        "each seed's split and noise drawn by each code" if draw == "ours" else "the authors' split and noise for both"
    )
    fig.suptitle(f"LIMIT_L, MNIST, uniform p=0.8, n=10,000, beta=10 ({data})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv) -> None:
    del argv
    args = FLAGS
    from absl import logging

    from limit_tf import cli

    cli.quiet_tensorflow_logs()
    logging.set_verbosity(logging.INFO)  # the runner's progress lines (absl's default shows warnings only)
    if not Path(args.reference).is_file():
        raise SystemExit(f"error: --reference={args.reference} does not exist.")
    reference = json.loads(Path(args.reference).read_text())
    ours = [our_run(Path(args.root), s, args.data_dir, not args.no_train, args.draw) for s in range(args.seeds)]
    mine = [r["test_accuracy_at_best_val"] for r in ours]
    theirs = reference["summary"]["test_accuracy_at_best_val"]
    final = [r["test_accuracy"][-1] for r in ours if r["test_accuracy"] and r["test_accuracy"][-1] is not None]
    summary = {
        "ours_test_accuracy_at_best_val": mine,
        "ours_mean": float(np.mean(mine)),
        "ours_std": float(np.std(mine, ddof=1)) if len(mine) > 1 else 0.0,
        "ours_test_accuracy_at_epoch_30_mean": float(np.mean(final)) if final else None,
        "authors_test_accuracy_at_best_val": theirs,
        "authors_mean": float(np.mean(theirs)),
        "authors_std": float(np.std(theirs, ddof=1)),
        "authors_test_accuracy_at_epoch_30_mean": float(np.mean([r["test_accuracy"][-1] for r in reference["runs"]])),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from limit_tf import workdir

    report = {"cell": CELL, "draw": args.draw, "summary": summary, "ours": ours, "versions": workdir.library_versions()}
    workdir.write_text(out.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    plot(ours, reference, out.with_suffix(".png"), args.draw)
    print(
        f"test accuracy at the best validation epoch, mean of {len(mine)} seeds: limit-tf "
        f"{100 * summary['ours_mean']:.2f}% +- {100 * summary['ours_std']:.2f}, the authors' code "
        f"{100 * summary['authors_mean']:.2f}% +- {100 * summary['authors_std']:.2f}"
    )
    print(f"written: {out.with_suffix('.json')}, {out.with_suffix('.png')}")


def define_flags() -> None:
    from absl import flags

    cli.define_shared_flags(
        root=str(HERE / "runs" / "mnist_n10000"),
        seeds=3,
        out=(str(HERE / "results" / "reference_curve"), "a path prefix (.json and .png added)."),
    )
    flags.DEFINE_string("data_dir", None, "Directory with the original data files (default: $LIMIT_DATA_DIR).")
    flags.DEFINE_string("reference", str(REFERENCE), "The authors' code's curves (JSON).")
    flags.DEFINE_bool("no_train", False, "Only read finished runs.")
    flags.DEFINE_enum(
        "draw",
        "ours",
        ["ours", "authors"],
        "Whose split, subset and noise each seed uses: limit-tf's, or the authors' code's for the same seed.",
    )


if __name__ == "__main__":
    cli.run(main, define_flags)
