r"""Tables and figures from experiment work dirs.

``python -m limit_tf.report --root=runs/sweep`` finds every finished run
under ``--root`` (its ``results.json``), groups runs by setting and method
variant, and writes the test accuracy mean +- std over seeds in the layout of
the paper's Table 1, with the paper's value (Tables 4-5) beside ours where it
exists, as Markdown and CSV. Figures (PNG): training accuracy on the noisy
labels and held-out accuracy per epoch for the methods of each setting (the
paper's Figures 1 and 3), and the clean-vs-corrupted training accuracy curves.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

# Method variants by name -> the config settings that define them. The sweep
# runs these names; the report labels runs by them.
VARIANTS: dict[str, dict] = {
    "ce": {"method": "ce"},
    "mae": {"method": "mae"},
    "mse": {"method": "mse"},
    "gce": {"method": "gce"},
    "fw": {"method": "fw"},
    "dmi": {"method": "dmi"},
    "ce_gn": {"method": "ce_gn"},
    "ce_ln": {"method": "ce_ln"},
    "soft_reg": {"method": "soft_reg"},
    "limit_g": {"method": "limit", "predictor": "gaussian", "sample": False},
    "limit_l": {"method": "limit", "predictor": "laplace", "sample": False},
    "limit_g_s": {"method": "limit", "predictor": "gaussian", "sample": True},
    "limit_l_s": {"method": "limit", "predictor": "laplace", "sample": True},
    "limit_ce": {"method": "limit", "predictor": "ce", "sample": False},
}

PAPER_LABELS = {
    "ce": "CE",
    "ce_gn": "CE + GN",
    "ce_ln": "CE + LN",
    "mae": "MAE",
    "fw": "FW",
    "dmi": "DMI",
    "soft_reg": "Soft reg. (11)",
    "limit_g_s": "LIMIT_G + S",
    "limit_l_s": "LIMIT_L + S",
    "limit_g": "LIMIT_G - S",
    "limit_l": "LIMIT_L - S",
}
_PAPER_ORDER = ["ce", "ce_gn", "ce_ln", "mae", "fw", "dmi", "soft_reg", "limit_g_s", "limit_l_s", "limit_g", "limit_l"]


def _paper_column(text: str) -> dict[str, tuple[float, float]]:
    pairs = [tuple(float(v) for v in cell.split("+-")) for cell in text.split(",")]
    return dict(zip(_PAPER_ORDER, pairs, strict=True))


# The paper's test accuracy (%) on MNIST with uniform noise, mean +- std over
# 5 seeds (its Tables 4 and 5; Table 1 shows the means). Key: (p, n).
PAPER_MNIST_UNIFORM: dict[tuple[float, int], dict[str, tuple[float, float]]] = {
    (0.0, 1000): _paper_column(
        "94.3+-0.5,89.5+-0.8,90.0+-0.5,94.6+-0.5,93.6+-0.6,94.5+-0.5,95.7+-0.2,95.6+-0.3,94.8+-0.3,95.7+-0.2,95.0+-0.2"
    ),
    (0.0, 10000): _paper_column(
        "98.4+-0.2,95.4+-0.5,95.3+-0.6,98.3+-0.2,98.4+-0.1,98.5+-0.1,98.4+-0.1,98.6+-0.1,98.6+-0.2,98.7+-0.1,98.7+-0.1"
    ),
    (0.0, 48000): _paper_column(
        "99.2+-0.0,97.1+-0.5,96.7+-0.7,99.1+-0.1,99.2+-0.1,99.2+-0.0,99.2+-0.0,99.3+-0.0,99.3+-0.0,99.3+-0.1,99.3+-0.1"
    ),
    (0.5, 1000): _paper_column(
        "71.8+-4.3,70.5+-3.5,66.8+-1.3,75.6+-5.0,64.3+-9.1,79.8+-2.9,76.4+-2.4,82.8+-4.6,88.7+-3.8,83.3+-2.3,88.2+-2.9"
    ),
    (0.5, 10000): _paper_column(
        "93.1+-0.6,92.3+-0.7,92.0+-1.5,95.7+-0.5,91.6+-2.0,95.7+-0.3,95.7+-0.0,97.0+-0.1,97.6+-0.1,97.1+-0.2,97.7+-0.1"
    ),
    (0.5, 48000): _paper_column(
        "97.2+-0.2,97.4+-0.5,97.6+-0.1,98.1+-0.1,97.3+-0.3,98.3+-0.1,98.2+-0.1,98.7+-0.1,98.9+-0.0,98.6+-0.1,99.0+-0.1"
    ),
    (0.8, 1000): _paper_column(
        "27.0+-3.8,25.9+-4.6,30.2+-4.8,25.1+-3.3,19.0+-4.1,30.3+-5.1,28.8+-2.2,35.9+-6.3,35.6+-3.2,37.1+-5.4,35.9+-4.3"
    ),
    (0.8, 10000): _paper_column(
        "69.9+-2.6,51.9+-10.5,53.1+-6.4,74.6+-2.7,61.2+-5.0,79.0+-1.5,67.0+-1.9,80.6+-2.8,93.3+-0.3,82.0+-1.5,93.9+-0.8"
    ),
    (0.8, 48000): _paper_column(
        "87.2+-1.0,85.3+-8.3,74.5+-19.1,93.2+-1.1,89.1+-2.1,88.8+-0.9,89.3+-0.6,93.4+-0.5,97.6+-0.3,94.7+-0.6,97.7+-0.2"
    ),
    (0.89, 1000): _paper_column(
        "10.3+-1.6,10.4+-4.5,11.9+-3.9,10.9+-1.4,8.7+-2.8,10.5+-1.2,10.3+-1.6,10.0+-1.0,10.1+-0.7,9.9+-1.0,11.1+-0.7"
    ),
    (0.89, 10000): _paper_column(
        "13.4+-3.3,10.2+-3.3,8.8+-5.4,12.1+-3.9,11.4+-1.4,14.1+-5.1,10.5+-0.8,14.3+-5.4,12.5+-2.1,12.6+-0.3,11.8+-1.0"
    ),
    (0.89, 48000): _paper_column(
        "13.2+-1.8,11.1+-0.4,14.1+-4.3,17.6+-8.1,12.3+-1.8,12.5+-1.5,12.7+-2.6,13.1+-4.3,28.3+-8.1,16.0+-5.9,28.6+-4.0"
    ),
}


def paper_value(dataset: str, noise: str, rate: float, n: int, variant: str) -> tuple[float, float] | None:
    """The paper's (mean, std) test accuracy in % for a setting, if it reports one."""
    if dataset != "mnist" or noise not in ("uniform", "none"):
        return None
    return PAPER_MNIST_UNIFORM.get((round(float(rate), 2), int(n)), {}).get(variant)


def variant_of(config: dict) -> str:
    """The variant name of a run's config (inverse of :data:`VARIANTS`)."""
    if config["method"] != "limit":
        return config["method"]
    name = {"gaussian": "limit_g", "laplace": "limit_l", "ce": "limit_ce"}[config["predictor"]]
    return name + ("_s" if config.get("sample") else "")


def variant_label(config: dict) -> str:
    """A row label: the variant plus its hyperparameters (beta, sigma_q, +init, ...)."""
    name = variant_of(config)
    extras = []
    if config["method"] in ("limit", "soft_reg"):
        extras.append(f"beta={config['beta']:g}")
    if config["method"] == "limit" and config.get("sample"):
        extras.append(f"sigma_q={config['sigma_q']:g}")
    if config["method"] == "limit" and config.get("init_from"):
        extras.append("+init")
    if config["method"] == "soft_reg":
        extras.append(f"lambda={config['soft_lambda']:g}")
    if config["method"] in ("ce_gn", "ce_ln"):
        extras.append(f"std={config['noise_std']:g}")
    if config["method"] == "gce":
        extras.append(f"q={config['gce_q']:g}")
    return name + (f" ({', '.join(extras)})" if extras else "")


@dataclasses.dataclass
class Row:
    dataset: str
    noise: str
    noise_rate: float
    n: int
    variant: str
    label: str
    test_accuracies: list[float]
    best_epochs: list[int]
    workdirs: list[str]

    @property
    def mean(self) -> float:
        return 100.0 * float(np.mean(self.test_accuracies))

    @property
    def std(self) -> float:
        return 100.0 * float(np.std(self.test_accuracies, ddof=1)) if len(self.test_accuracies) > 1 else 0.0

    @property
    def paper(self) -> tuple[float, float] | None:
        return paper_value(self.dataset, self.noise, self.noise_rate, self.n, self.variant)


def find_runs(root: str | os.PathLike) -> list[Path]:
    """Work dirs under ``root`` (itself included) that hold a finished run."""
    return sorted(p.parent for p in Path(root).rglob("results.json"))


def collect(workdirs: Iterable[str | os.PathLike]) -> list[Row]:
    """Groups finished runs by setting and variant label (seeds averaged)."""
    groups: dict[tuple, Row] = {}
    for workdir in workdirs:
        results = json.loads((Path(workdir) / "results.json").read_text())
        c = results["config"]
        n = int(results["num_train_examples"])
        key = (c["dataset"], c["noise"], float(c["noise_rate"]), n, variant_label(c))
        row = groups.setdefault(key, Row(*key[:4], variant_of(c), key[4], [], [], []))
        row.test_accuracies.append(float(results["test_accuracy"]))
        row.best_epochs.append(int(results["best_epoch"]))
        row.workdirs.append(str(workdir))
    order = {name: i for i, name in enumerate(VARIANTS)}
    return sorted(
        groups.values(), key=lambda r: (r.dataset, r.noise, r.noise_rate, r.n, order.get(r.variant, 99), r.label)
    )


def _fmt(mean: float, std: float) -> str:
    return f"{mean:.1f} +- {std:.1f}"


def to_markdown(rows: list[Row]) -> str:
    """One table per setting: ours (mean +- std over seeds) beside the paper's."""
    out = []
    settings = sorted({(r.dataset, r.noise, r.noise_rate, r.n) for r in rows})
    for dataset, noise, rate, n in settings:
        out.append(f"### {dataset}, {noise} noise p = {rate:g}, n = {n}\n")
        out.append("| method | test accuracy % (ours) | seeds | best epochs | paper |")
        out.append("|---|---|---|---|---|")
        for r in (r for r in rows if (r.dataset, r.noise, r.noise_rate, r.n) == (dataset, noise, rate, n)):
            paper = _fmt(*r.paper) if r.paper else "-"
            epochs = ", ".join(str(e) for e in r.best_epochs)
            out.append(f"| {r.label} | {_fmt(r.mean, r.std)} | {len(r.test_accuracies)} | {epochs} | {paper} |")
        out.append("")
    return "\n".join(out)


def write_csv(rows: list[Row], path: str | os.PathLike) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "dataset",
                "noise",
                "noise_rate",
                "n",
                "variant",
                "label",
                "mean",
                "std",
                "seeds",
                "paper_mean",
                "paper_std",
            ]
        )
        for r in rows:
            paper = r.paper or (math.nan, math.nan)
            writer.writerow(
                [
                    r.dataset,
                    r.noise,
                    r.noise_rate,
                    r.n,
                    r.variant,
                    r.label,
                    f"{r.mean:.2f}",
                    f"{r.std:.2f}",
                    len(r.test_accuracies),
                    *paper,
                ]
            )


def plot_curves(rows: list[Row], out_dir: str | os.PathLike) -> list[Path]:
    """Per setting: training accuracy on noisy labels and held-out accuracy per
    epoch for each method (Figures 1/3), and clean-vs-corrupted training
    accuracy (memorization). Uses the first seed of each method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from limit_tf.train import read_metrics

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    settings = sorted({(r.dataset, r.noise, r.noise_rate, r.n) for r in rows})
    for dataset, noise, rate, n in settings:
        group = [r for r in rows if (r.dataset, r.noise, r.noise_rate, r.n) == (dataset, noise, rate, n)]
        fig, (ax_train, ax_test, ax_mem) = plt.subplots(1, 3, figsize=(16, 4.5))
        for r in group:
            metrics = read_metrics(r.workdirs[0])
            if not metrics:
                continue
            epochs = [m["epoch"] + 1 for m in metrics]
            line = ax_train.plot(epochs, [m.get("train_acc_observed", math.nan) for m in metrics], label=r.label)[0]
            held_out = "test_accuracy_monitor" if "test_accuracy_monitor" in metrics[0] else "val_accuracy"
            ax_test.plot(epochs, [m[held_out] for m in metrics], label=r.label, color=line.get_color())
            ax_mem.plot(
                epochs,
                [m.get("train_acc_clean_subset", math.nan) for m in metrics],
                color=line.get_color(),
                label=f"{r.label}: correct labels",
            )
            ax_mem.plot(
                epochs,
                [m.get("train_acc_corrupted_subset", math.nan) for m in metrics],
                color=line.get_color(),
                linestyle="--",
                label=f"{r.label}: corrupted labels",
            )
        if 0 < rate < 1:
            ax_train.axhline(1 - rate, color="gray", linestyle=":", label=f"clean fraction {1 - rate:g}")
        ax_train.set(title="training accuracy on the noisy labels", xlabel="epoch", ylim=(0, 1.02))
        ax_test.set(
            title=f"{'test (clean)' if held_out.startswith('test') else 'validation (noisy)'} accuracy",
            xlabel="epoch",
            ylim=(0, 1.02),
        )
        ax_mem.set(title="training accuracy vs observed labels", xlabel="epoch", ylim=(0, 1.02))
        for ax in (ax_train, ax_test, ax_mem):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle(f"{dataset}, {noise} noise p={rate:g}, n={n}")
        fig.tight_layout()
        path = out_dir / f"curves_{dataset}_{noise}{rate:g}_n{n}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def write_report(
    root: str | os.PathLike, out_dir: str | os.PathLike | None = None, *, plots: bool = True
) -> tuple[str, list[Row]]:
    """Writes ``report.md``, ``report.csv`` and the PNG figures; returns the Markdown."""
    out_dir = Path(out_dir or root)
    rows = collect(find_runs(root))
    if not rows:
        raise FileNotFoundError(f"no finished run (results.json) under {root}.")
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = to_markdown(rows)
    (out_dir / "report.md").write_text(markdown)
    write_csv(rows, out_dir / "report.csv")
    if plots:
        plot_curves(rows, out_dir)
    return markdown, rows


def main(argv) -> None:
    from absl import flags

    if len(argv) > 1:
        raise SystemExit(f"error: unexpected arguments {argv[1:]}")
    root = flags.FLAGS.root
    try:
        markdown, _ = write_report(root, flags.FLAGS.out_dir, plots=flags.FLAGS.plots)
    except FileNotFoundError as e:
        print(f"error: {e}")
        raise SystemExit(2) from None
    print(markdown)


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_string("root", "runs", "Directory searched for finished runs.")
    flags.DEFINE_string("out_dir", None, "Where report.md / report.csv / PNGs go (default: --root).")
    flags.DEFINE_bool("plots", True, "Write PNG figures.")
    app.run(main)
