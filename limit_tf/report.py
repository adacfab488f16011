r"""Tables and figures from experiment work dirs.

``python -m limit_tf.report --root=runs/sweep`` finds every finished run
under ``--root``, groups runs by setting and method variant (with its
hyperparameters), and writes the test accuracy mean +- std over seeds in the
layout of the paper's Table 1, with the paper's value (its Tables 4-5)
beside ours where the paper reports the setting, as Markdown and CSV.
Figures (PNG): training accuracy on the noisy labels and held-out accuracy per
epoch for the methods of each setting (the paper's Figures 1 and 3), and the
clean-vs-corrupted training accuracy curves. Runs are read through
:mod:`limit_tf.workdir`; nothing here imports TensorFlow, and figures are
drawn on ``matplotlib.figure.Figure`` objects (the pyplot backend is left alone).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from limit_tf import methods, paper, workdir
from limit_tf.config import EXECUTION_FIELDS, ConfigError, ExperimentConfig, naming


@dataclasses.dataclass
class Row:
    """One setting x method variant (with hyperparameters), over seeds."""

    dataset: str
    noise: str
    noise_rate: float
    n: int
    variant: str
    label: str
    paper_label: str | None
    held_out: str  # "test" (the clean test set) or "validation" (no test set given)
    test_accuracies: list[float]
    best_epochs: list[int]
    workdirs: list[str]

    @property
    def setting(self) -> tuple:
        return (self.dataset, self.noise, self.noise_rate, self.n)

    @property
    def mean(self) -> float:
        return 100.0 * float(np.mean(self.test_accuracies))

    @property
    def std(self) -> float:
        return 100.0 * float(np.std(self.test_accuracies, ddof=1)) if len(self.test_accuracies) > 1 else 0.0

    @property
    def paper(self) -> tuple[float, float] | None:
        return paper.reported(self.dataset, self.noise, self.noise_rate, self.n, self.paper_label)


def find_runs(root: str | os.PathLike) -> list[Path]:
    """Work dirs under ``root`` (itself included) that hold a finished run."""
    return [run.path for run in workdir.find_runs(root)]


def _identity(config: dict) -> dict:
    """The settings that make a run's results what they are, less its seed: runs that agree here are seeds
    of one experiment (the identity the work dir uses, :meth:`ExperimentConfig.experiment`)."""
    try:
        identity = ExperimentConfig.from_dict(config).experiment()
    except (ConfigError, TypeError):  # a config of another version: compare it as stored
        identity = {k: v for k, v in config.items() if k not in EXECUTION_FIELDS}
    identity.pop("seed", None)
    return identity


def _shown(value) -> str:
    if isinstance(value, str) and ("/" in value or os.sep in value):
        return Path(value).name or value
    return f"{value:g}" if isinstance(value, float) else str(value)


def collect(workdirs: Iterable[str | os.PathLike]) -> list[Row]:
    """Groups finished runs by setting and variant label, averaging only over seeds: runs whose other
    results-changing settings differ (epochs, architecture, the run they were cleaned with, ...) get
    rows of their own, labelled with what differs."""
    groups: dict[tuple, Row] = {}
    identities: dict[tuple, dict] = {}
    for path in workdirs:
        results = workdir.RunDir(path).results()
        c = results["config"]
        n = int(results["num_train_examples"])
        variant = methods.variant_of(c)
        settings, defaults = naming(c)
        label = methods.label(settings, defaults=defaults)
        held_out = "validation" if results.get("test_accuracy") is None else "test"
        identity = _identity(c)
        key = (
            c["dataset"],
            c["noise"],
            float(c["noise_rate"]),
            n,
            label + ("" if held_out == "test" else " [validation]"),
            json.dumps(identity, sort_keys=True, default=str),
        )
        identities[key] = identity
        row = groups.setdefault(key, Row(*key[:4], variant.name, key[4], variant.paper_label, held_out, [], [], []))
        row.test_accuracies.append(float(results["test_accuracy" if held_out == "test" else "best_val_accuracy"]))
        row.best_epochs.append(int(results["best_epoch"]))
        row.workdirs.append(str(path))
    by_label: dict[tuple, list[tuple]] = {}
    for key in groups:
        by_label.setdefault(key[:5], []).append(key)
    for keys in by_label.values():
        if len(keys) < 2:
            continue
        fields = sorted({f for k in keys for f in identities[k]} - {"method"})
        differing = [f for f in fields if len({json.dumps(identities[k].get(f), default=str) for k in keys}) > 1]
        for k in keys:
            extra = ", ".join(f"{f}={_shown(identities[k].get(f))}" for f in differing)
            groups[k].label += f" [{extra}]"
    order = {name: i for i, name in enumerate(methods.VARIANTS)}
    return sorted(groups.values(), key=lambda r: (*r.setting, order.get(r.variant, 99), r.label))


def _fmt(mean: float, std: float) -> str:
    return f"{mean:.1f} +- {std:.1f}"


def _paper_text(row: Row) -> str:
    if row.paper:
        return _fmt(*row.paper)
    return "not in the paper" if row.paper_label is None else "-"


def _is_users(dataset: str) -> bool:
    """Whether ``dataset`` is your own data (``folder:``, ``csv:``, ...), which the paper never saw."""
    from limit_tf.data import user

    return user.parse(dataset) is not None


def setting_title(dataset: str, noise: str, rate: float, n: int, sep: str = " = ") -> str:
    """``mnist, uniform noise p = 0.8, n = 1000``; your own data's labels are "as given"."""
    if not _is_users(dataset):
        return f"{dataset}, {noise} noise p{sep}{rate:g}, n{sep}{n}"
    added = f" plus {noise} noise p{sep}{rate:g}" if rate > 0 else ""
    return f"{dataset}, labels as given{added}, n{sep}{n}"


def to_markdown(rows: list[Row]) -> str:
    """One table per setting: ours (mean +- std over seeds) beside the paper's (benchmarks only)."""
    out = []
    for setting in sorted({r.setting for r in rows}):
        out.append(f"### {setting_title(*setting)}\n")
        if any(r.held_out == "validation" for r in rows if r.setting == setting):
            out.append(
                "No clean test set was given: rows marked [validation] report the best (noisy) validation accuracy.\n"
            )
        paper_column = not _is_users(setting[0])
        out.append("| method | test accuracy % (ours) | seeds | best epochs |" + (" paper |" if paper_column else ""))
        out.append("|---|---|---|---|" + ("---|" if paper_column else ""))
        for r in (r for r in rows if r.setting == setting):
            epochs = ", ".join(str(e) for e in r.best_epochs)
            cells = [r.label, _fmt(r.mean, r.std), str(len(r.test_accuracies)), epochs]
            out.append("| " + " | ".join(cells + ([_paper_text(r)] if paper_column else [])) + " |")
        out.append("")
    return "\n".join(out)


def write_csv(rows: list[Row], path: str | os.PathLike) -> None:
    columns = ["dataset", "noise", "noise_rate", "n", "variant", "label", "mean", "std", "seeds"]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*columns, "paper_mean", "paper_std"])
        for r in rows:
            writer.writerow(
                [
                    *(getattr(r, c) for c in columns[:6]),
                    f"{r.mean:.2f}",
                    f"{r.std:.2f}",
                    len(r.test_accuracies),
                    *(r.paper or (math.nan, math.nan)),
                ]
            )


def plot_curves(rows: list[Row], out_dir: str | os.PathLike) -> list[Path]:
    """Per setting: training accuracy on noisy labels and held-out accuracy per
    epoch for each method (Figures 1/3), and clean-vs-corrupted training
    accuracy (memorization). Uses the first seed of each method."""
    from matplotlib.figure import Figure

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for setting in sorted({r.setting for r in rows}):
        dataset, noise, rate, n = setting
        fig = Figure(figsize=(16, 4.5))
        ax_train, ax_test, ax_mem = fig.subplots(1, 3)
        held_out = "val_accuracy"
        for r in (r for r in rows if r.setting == setting):
            metrics = workdir.RunDir(r.workdirs[0]).metrics()
            if not metrics:
                continue
            epochs = [m["epoch"] + 1 for m in metrics]
            held_out = "test_accuracy_monitor" if "test_accuracy_monitor" in metrics[0] else "val_accuracy"
            line = ax_train.plot(epochs, [m.get("train_acc_observed", math.nan) for m in metrics], label=r.label)[0]
            color = line.get_color()
            ax_test.plot(epochs, [m.get(held_out, math.nan) for m in metrics], label=r.label, color=color)
            for key, style, what in (
                ("train_acc_clean_subset", "-", "correct labels"),
                ("train_acc_corrupted_subset", "--", "corrupted labels"),
            ):
                if key in metrics[0]:  # absent where nobody knows which labels are wrong (your own data)
                    values = [m.get(key, math.nan) for m in metrics]
                    ax_mem.plot(epochs, values, color=color, linestyle=style, label=f"{r.label}: {what}")
        if 0 < rate < 1:
            ax_train.axhline(1 - rate, color="gray", linestyle=":", label=f"clean fraction {1 - rate:g}")
        ax_train.set(title="training accuracy on the noisy labels", xlabel="epoch", ylim=(0, 1.02))
        title = "test (clean)" if held_out.startswith("test") else "validation (noisy)"
        ax_test.set(title=f"{title} accuracy", xlabel="epoch", ylim=(0, 1.02))
        ax_mem.set(title="training accuracy vs observed labels", xlabel="epoch", ylim=(0, 1.02))
        if not ax_mem.lines:
            ax_mem.text(
                0.5,
                0.5,
                "which labels are wrong is not known here:\nrun limit_tf.detection on a run",
                ha="center",
                va="center",
                transform=ax_mem.transAxes,
            )
        for ax in (ax_train, ax_test, ax_mem):
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=7)
        fig.suptitle(setting_title(dataset, noise, rate, n, sep="="))
        fig.tight_layout()
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", dataset).strip("_")  # folder:runs/x -> folder_runs_x
        path = out_dir / f"curves_{slug}_{noise}{rate:g}_n{n}.png"
        fig.savefig(path, dpi=110)
        written.append(path)
    return written


def write_report(
    root: str | os.PathLike, out_dir: str | os.PathLike | None = None, *, plots: bool = True
) -> tuple[str, list[Row]]:
    """Writes ``report.md``, ``report.csv`` and the PNG figures; returns the Markdown and the rows.

    Raises:
      FileNotFoundError: no finished run under ``root``.
    """
    out_dir = Path(out_dir or root)
    rows = collect(find_runs(root))
    if not rows:
        raise FileNotFoundError(f"no finished run (results.json) under {root}.")
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = to_markdown(rows)
    workdir.write_text(out_dir / "report.md", markdown)
    write_csv(rows, out_dir / "report.csv")
    if plots:
        plot_curves(rows, out_dir)
    return markdown, rows


def main(argv) -> None:
    del argv
    from absl import flags

    from limit_tf import cli

    try:
        markdown, _ = write_report(flags.FLAGS.root, flags.FLAGS.out_dir, plots=flags.FLAGS.plots)
    except FileNotFoundError as e:
        cli.fail(str(e))
    print(markdown)


def define_flags() -> None:
    from absl import flags

    from limit_tf import cli

    cli.define_shared_flags(root="runs")
    flags.DEFINE_string("out_dir", None, "Where report.md / report.csv / PNGs go (default: --root).")
    flags.DEFINE_bool("plots", True, "Write PNG figures.")


if __name__ == "__main__":
    from limit_tf import cli

    cli.run(main, define_flags)
