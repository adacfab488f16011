"""What detection writes: the ranked list of label issues, its summary and figures.

In the output folder of :func:`limit_tf.runs.detect_in_run`:

- ``label_issues.csv``: one row per example you gave (the training split
  and the validation split), the flagged ones first, each part most
  suspicious first (flagged class by class, the default: each class's most
  suspicious in turn, in proportion to its flags; ``Detection.standing``). Its first column says where the example is in your data: ``path``
  (image folders: the file, relative to the folder), ``line`` (CSV: the line
  in the file, the header being line 1, as editors and spreadsheets number
  it), ``x_index`` (npz: the 0-based index into ``x``), ``origin``
  (tfds: split and index) or ``source_index`` (named datasets: the index
  in the official training set). Then ``observed_label``,
  ``suggested_label`` (class names), ``score``, ``rank``, ``flagged``,
  ``split`` (``train``: scored by the model that trained on it;
  ``validation``: scored by the same model, which never trained on it, and
  flagged at the training ranking's thresholds), ``split_index`` (the
  position in that split; ``--clean_from`` reads the training rows), and
  ``true_label`` when the truth is known (benchmarks);
- ``detection.json``: the summary (estimated noise rate and the estimator,
  number flagged, and on benchmarks the realized rate and the metrics);
- ``suspects_grid.png`` (images only): the most suspicious examples of each
  observed class, titled with file name, label and suggested label;
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


def origin_column(dataset, split: str = "train") -> tuple[str, np.ndarray]:
    """The name and values of the column that says where each example of ``split`` came from."""
    part = getattr(dataset, split)
    if part.origins is None:
        return "source_index", part.source_indices
    kind = dataset.name.partition(":")[0]
    return {"folder": "path", "csv": "line", "npz": "x_index"}.get(kind, "origin"), part.origins


def save(
    out_dir, detection, dataset, *, suggested, summary: dict, score_name: str, validation: dict | None = None
) -> list[Path]:
    """Writes ``label_issues.csv``, ``detection.json`` and the figures; returns their paths.

    ``validation``: the validation split's ``scores``, ``flagged`` and
    ``suggested`` (scored by the same model, out of sample): its examples get
    rows too, with ``split`` = ``validation``, so that every example given
    has one.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = list(dataset.class_names)
    truth_known = dataset.truth_known
    parts = [("train", detection.scores, detection.standing(), detection.flagged, suggested)]
    if validation is not None and len(dataset.validation):
        standing = detection.standing(validation["scores"], dataset.validation.labels)  # among the training rows
        parts.append(("validation", validation["scores"], standing, validation["flagged"], validation["suggested"]))
    rows = []
    origin_name = origin_column(dataset)[0]
    for split, scores, standing, flagged, suggested_labels in parts:
        part = getattr(dataset, split)
        _, origins = origin_column(dataset, split)
        for i in range(len(part)):
            rows.append(
                (
                    (bool(flagged[i]), float(standing[i]), float(scores[i])),
                    [
                        origins[i],
                        names[part.labels[i]],
                        names[suggested_labels[i]],
                        f"{scores[i]:.6g}",
                        0,  # the rank, set below
                        int(flagged[i]),
                        split,
                        int(i),
                    ]
                    + ([names[part.clean_labels[i]]] if truth_known else []),
                )
            )
    # Flagged first, then by standing (class by class: the place in the class's own ranking), then by score;
    # stable: ties keep the training examples first, in index order.
    rows.sort(key=lambda r: r[0], reverse=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = [origin_name, "observed_label", "suggested_label", "score", "rank", "flagged", "split", "split_index"]
    writer.writerow(header + (["true_label"] if truth_known else []))
    for rank, (_, row) in enumerate(rows, 1):
        row[4] = rank
        writer.writerow(row)
    written = [out / ISSUES, out / SUMMARY]
    workdir.write_text(written[0], buffer.getvalue())
    workdir.write_json(written[1], summary)
    observed = dataset.train.labels
    truth = dataset.train.clean_labels if truth_known else None
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
                origins=origin_column(dataset)[1] if origin_name == "path" else None,
                suggested=suggested,
            )
        )
    return written


def read_flags(path) -> tuple[np.ndarray, np.ndarray]:
    """From a ``label_issues.csv``: per training index, whether it is flagged and its suggested label name
    (the validation split's rows, when there are any, are left out: cleaning changes the training split)."""
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("split", "train") == "train"]
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


def _estimator(summary: dict) -> str:
    if summary.get("estimate_bounds"):
        low, high = summary["estimate_bounds"]
        return (
            f"confident learning: the midpoint of q's {100 * low:.1f}% and the classifier's {100 * high:.1f}%, "
            "which err low and high"
        )
    return "confident learning on the classifier's probabilities"


def _interval(summary: dict) -> str:
    interval = summary.get("estimated_noise_interval")
    if not interval or any(v != v for v in interval):  # NaN: no examples
        return ""
    return f"; 95% interval {100 * interval[0]:.1f}-{100 * interval[1]:.1f}% over resampled examples"


def describe(summary: dict, out_dir, top: int = 5) -> str:
    """What a detection found, in a few lines for a person (``detection.json`` holds everything)."""
    n, flagged = summary["num_examples"], summary["num_flagged"]
    if summary.get("validation_scored"):
        more = (
            f" The {summary['validation_scored']} validation examples are listed too (split=validation; scored by "
            f"the same model, which never trained on them): {summary['validation_flagged']} flagged at the same "
            f"score threshold{'s' if 'class_thresholds' in summary else ''}."
        )
    else:
        more = ""
    how = {
        "estimate": "as many as estimated",
        "estimate, class by class": "as many as estimated, in the classes where it finds them",
    }.get(summary["flagged_by"], "by your budget or threshold")
    lines = [
        f"{n} training examples; estimated {summary['estimated_issues']} wrong labels "
        f"({100 * summary['estimated_noise_rate']:.1f}%{_interval(summary)}, {_estimator(summary)}); "
        f"flagged {flagged} ({how}) by the {summary['score']} score.{more}"
    ]
    per_class = summary.get("flagged_per_class")
    if isinstance(per_class, dict) and flagged:
        most = sorted(per_class.items(), key=lambda kv: -kv[1])[:5]
        lines.append("Flagged most under: " + ", ".join(f"{name} {count}" for name, count in most if count) + ".")
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
            f"The classifier on the validation split: {100 * summary['validation_accuracy']:.1f}% on the given labels; "
            f"against the true ones an estimated {100 * summary['estimated_clean_accuracy']:.0f}% (what the noise "
            "estimate implies; it runs high when the classifier is weak and the estimate with it)."
        )
    if summary.get("trust_warning"):
        lines.append(f"Warning: {summary['trust_warning']}")
    lines.append(f"Written: {out_dir}/ ({ISSUES}, {SUMMARY}, figures).")
    return "\n".join(lines)
