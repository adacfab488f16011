"""What detection writes: the ranked list of label issues, its summary and figures.

In the output folder of :func:`limit_tf.runs.detect_in_run`:

- ``label_issues.csv``: one row per training example, most suspicious
  first. Its first column says where the example is in your data: ``path``
  (image folders: the file, relative to the folder), ``line`` (CSV: the line
  in the file, the header being line 1, as editors and spreadsheets number
  it), ``x_index`` (npz: the 0-based index into ``x``), ``origin``
  (tfds: split and index) or ``source_index`` (named datasets: the index
  in the official training set). Then ``observed_label``,
  ``suggested_label`` (class names), ``score``, ``rank``, ``flagged``,
  ``split_index`` (the position in the run's training split, which
  ``--clean_from`` reads), and ``true_label`` when the truth is known
  (benchmarks);
- ``detection.json``: the summary (estimated noise rate and the estimator,
  number flagged, and on benchmarks the realized rate and the metrics);
- ``suspects_grid.png`` (images only): the most suspicious examples of each
  observed class, titled with class names;
- ``score_histogram.png`` (benchmarks only): scores of correct vs corrupted examples.

Figures are drawn on ``matplotlib.figure.Figure`` objects (the pyplot
backend is left alone); every file is written atomically.
"""

from __future__ import annotations

import csv
import io
import itertools
from pathlib import Path

import numpy as np

from limit_tf import workdir

ISSUES = "label_issues.csv"
# How the console names an example, by the first column of label_issues.csv.
WHERE = {"line": "line {}", "x_index": "x[{}]", "source_index": "training example {}"}
SUMMARY = "detection.json"


def origin_column(dataset) -> tuple[str, np.ndarray]:
    """The name and values of the column that says where each training example came from."""
    origins = dataset.train.origins
    if origins is None:
        return "source_index", dataset.train.source_indices
    kind = dataset.name.partition(":")[0]
    return {"folder": "path", "csv": "line", "npz": "x_index"}.get(kind, "origin"), origins


def save(out_dir, detection, dataset, *, suggested, summary: dict, score_name: str) -> list[Path]:
    """Writes ``label_issues.csv``, ``detection.json`` and the figures; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = list(dataset.class_names)
    observed = dataset.train.labels
    truth = dataset.train.clean_labels if dataset.truth_known else None
    origin_name, origins = origin_column(dataset)
    rank_of = np.empty(len(detection.ranked), np.int64)
    rank_of[detection.ranked] = np.arange(1, len(detection.ranked) + 1)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = [origin_name, "observed_label", "suggested_label", "score", "rank", "flagged", "split_index"]
    writer.writerow(header + (["true_label"] if truth is not None else []))
    for i in detection.ranked:
        row = [
            origins[i],
            names[observed[i]],
            names[suggested[i]],
            f"{detection.scores[i]:.6g}",
            int(rank_of[i]),
            int(detection.flagged[i]),
            int(i),
        ]
        writer.writerow(row + ([names[truth[i]]] if truth is not None else []))
    written = [out / ISSUES, out / SUMMARY]
    workdir.write_text(written[0], buffer.getvalue())
    workdir.write_json(written[1], summary)
    if truth is not None:
        written.append(score_histogram(out / "score_histogram.png", detection, observed != truth, score_name))
    if dataset.train.x.ndim == 4:
        written.append(
            suspects_grid(
                out / "suspects_grid.png",
                detection,
                observed,
                dataset.train.x,
                names,
                truth,
                origins=origins if origin_name == "path" else None,
                suggested=suggested,
            )
        )
    return written


def read_flags(path) -> tuple[np.ndarray, np.ndarray]:
    """From a ``label_issues.csv``: per training index, whether it is flagged and its suggested label name."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    column = "split_index" if rows and "split_index" in rows[0] else "index"  # "index": files of limit-tf 0.2
    order = np.argsort([int(r[column]) for r in rows])
    flagged = np.asarray([r["flagged"] == "1" for r in rows])[order]
    suggested = np.asarray([r["suggested_label"] for r in rows])[order]
    return flagged, suggested


def score_histogram(path: Path, detection, corrupted: np.ndarray, score_name: str) -> Path:
    """Figures A1/A2: the scores of correct vs corrupted examples."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    bins = np.linspace(detection.scores.min(), detection.scores.max(), 60)
    for mask, what in ((~corrupted, "correct labels"), (corrupted, "corrupted labels")):
        ax.hist(detection.scores[mask], bins=bins, alpha=0.6, label=f"{what} ({mask.sum()})", density=True)
    ax.set(xlabel=score_name, ylabel="density", title="score of correct vs corrupted examples")
    ax.legend(loc="upper center")  # "best" searches every bar of the histograms: slow
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def suspect_title(class_names, observed: int, suggested: int | None, origin=None, truth: int | None = None) -> str:
    """An image's title in the grid: its file (when it has one), its label, the suggested one, the truth."""
    lines = [str(origin)] if origin is not None else []
    label = class_names[int(observed)]
    if suggested is not None and int(suggested) != int(observed):
        label += f" -> {class_names[int(suggested)]}?"
    lines.append(label)
    if truth is not None:
        lines.append(f"(true: {class_names[int(truth)]})")
    return "\n".join(lines)


def suspects_grid(
    path: Path,
    detection,
    observed,
    images,
    class_names,
    truth=None,
    per_class: int = 8,
    *,
    origins=None,
    suggested=None,
) -> Path:
    """Figures 4/A3: the most suspicious examples of each observed class, each titled by
    :func:`suspect_title` (file name, label, suggested label)."""
    from matplotlib.figure import Figure

    classes = np.unique(observed)
    fig = Figure(figsize=(per_class * 1.2, len(classes) * 1.3))
    axes = fig.subplots(len(classes), per_class, squeeze=False)
    for row, c in enumerate(classes):
        suspects = [i for i in detection.ranked if observed[i] == c][:per_class]
        for col in range(per_class):
            ax = axes[row, col]
            ax.axis("off")
            if col < len(suspects):
                image = np.asarray(images[suspects[col]])
                ax.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None)
                i = suspects[col]
                title = suspect_title(
                    class_names,
                    c,
                    None if suggested is None else suggested[i],
                    None if origins is None else origins[i],
                    None if truth is None else truth[i],
                )
                ax.set_title(title, fontsize=5)
    fig.suptitle("most suspicious examples per observed label", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def describe(summary: dict, out_dir, top: int = 5) -> str:
    """What a detection found, in a few lines for a person (``detection.json`` holds everything)."""
    n, flagged = summary["num_examples"], summary["num_flagged"]
    how = "as many as estimated" if summary["flagged_by"] == "estimate" else "by your budget or threshold"
    lines = [
        f"{n} training examples; estimated {summary['estimated_issues']} wrong labels "
        f"({100 * summary['estimated_noise_rate']:.1f}%, confident learning on the classifier's probabilities); "
        f"flagged {flagged} ({how}) by the {summary['score']} score."
    ]
    if summary["truth_known"]:
        lines.append(
            f"Known truth: {100 * summary['realized_noise_rate']:.1f}% of the labels are wrong; "
            f"ROC AUC {summary['roc_auc']:.4f}, flagged precision {summary['precision']:.3f}, "
            f"recall {summary['recall']:.3f}."
        )
    with open(Path(out_dir) / ISSUES, newline="") as f:
        rows = list(itertools.islice(csv.DictReader(f), top))
    if rows:
        where = next(iter(rows[0]))  # the first column: path, line, x_index, origin or source_index
        shown = WHERE.get(where, "{}")
        lines.append(f"Most suspicious (by the {where!r} column of {ISSUES}):")
        lines += [
            f"  {shown.format(r[where])}: labelled {r['observed_label']}, looks like {r['suggested_label']} "
            f"(score {r['score']})"
            for r in rows
        ]
    if summary.get("estimated_clean_accuracy") is not None:
        lines.append(
            f"The classifier on the validation split: {100 * summary['validation_accuracy']:.1f}% on the given labels, "
            f"at most {100 * summary['estimated_clean_accuracy']:.1f}% estimated against the true ones (the lower of "
            "its mean confidence and what the noise estimate implies)."
        )
    if summary.get("trust_warning"):
        lines.append(f"Warning: {summary['trust_warning']}")
    lines.append(f"Written: {out_dir}/ ({ISSUES}, {SUMMARY}, figures).")
    return "\n".join(lines)
