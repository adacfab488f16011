r"""Where the flags go: one threshold over all examples against class by class, on trained runs with a known truth.

    python benchmarks/flagging.py                                   # real_noise.py's and noise_estimate.py's runs
    python benchmarks/flagging.py --runs='benchmarks/runs/real_noise/pair*/limit'

Detection flags as many examples as its estimate finds (``limit_tf.detection``).
Per run this scores the training and the validation split once with the
run's model and flags them both ways, with the same scores and the same
estimate: ``per_class=False`` (the most suspicious over all examples, one
threshold) and ``per_class=True`` (the estimated number shared out over the
classes like the confident joint's off-diagonal rows, each class at its own
threshold; the default). It reports the flags' precision and recall, the
ROC AUC of the list as a person reads it and the precision of its first 100
and 1,000 rows, against the truth: the run's own
when it made the noise (``--noise_rate`` runs), else ``truth.json`` beside
the run's folder (``real_noise.py``'s folders). Nothing is trained. Writes
``--out`` (.json and .md): a row per run and the means per group of runs
(the run dir's parent with its seed taken out, and the method).
"""

from __future__ import annotations

import glob
import json
import re
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def define_flags() -> None:
    from absl import flags

    from limit_tf import cli

    flags.DEFINE_list(
        "runs",
        [
            str(HERE / "runs" / "real_noise" / "*_seed*" / "limit"),
            str(HERE / "runs" / "real_noise" / "*_seed*" / "ce"),
            str(HERE / "runs" / "noise_estimate" / "*" / "*" / "limit"),
        ],
        "Finished run dirs (or globs) whose truth is known.",
    )
    cli.define_shared_flags(out=(str(HERE / "results" / "flagging"), "a path prefix (.json and .md added)."))


def truth_masks(dataset, config) -> tuple[np.ndarray, np.ndarray] | None:
    """Which training and validation labels are wrong: the run's own truth, or its folder's ``truth.json``."""
    if dataset.truth_known:
        return dataset.train.noise_mask, dataset.validation.noise_mask
    folder = Path(config.dataset.partition(":")[2])
    found = folder.parent / "truth.json"
    if not found.is_file():
        return None
    true = json.loads(found.read_text())["true_label"]
    names = list(dataset.class_names)
    return tuple(
        np.array([true[str(o)] != names[y] for o, y in zip(part.origins, part.labels, strict=True)])
        for part in (dataset.train, dataset.validation)
    )


def one_run(run: str) -> dict | None:
    from limit_tf import data as data_lib
    from limit_tf import detection, runs

    model, config, dataset = runs.load_trained_model(run)
    masks = truth_masks(dataset, config)
    if masks is None:
        print(f"{run}: no known truth, skipped", flush=True)
        return None
    probs, val = (
        runs.model_probabilities(model, data_lib.to_tf_dataset(dataset, split, batch_size=1024, inputs_only=True))
        for split in ("train", "validation")
    )
    name = "limit" if probs.get("predictor") is not None else "self_confidence"
    labels, val_labels = dataset.train.labels, dataset.validation.labels
    scores, val_scores = detection.score(name, probs, labels), detection.score(name, val, val_labels)
    inside = Path(run).absolute().is_relative_to(HERE.parent)
    shown = str(Path(run).absolute().relative_to(HERE.parent)) if inside else run
    row = {"run": shown, "score": name, "true_rate": float(masks[0].mean())}
    for per_class in (False, True):
        found, estimate, summary = detection.detect(
            scores,
            probs["classifier"],
            labels,
            predictor_probs=probs.get("predictor"),
            noise_mask=masks[0],
            per_class=per_class,
        )
        held = detection.evaluate(found.apply(val_scores, val_labels), masks[1])
        key = "class_by_class" if per_class else "one_threshold"
        row[key] = {
            "flagged": summary["num_flagged"],
            **{m: summary[m] for m in ("precision", "recall", "roc_auc")},
            **{m: summary.get(m) for m in ("precision_at_100", "precision_at_1000")},  # None: fewer rows than that
            **{f"validation_{m}": held[m] for m in ("precision", "recall", "roc_auc")},
        }
    row["estimated_rate"] = estimate.noise_rate
    print(json.dumps(row), flush=True)
    return row


def group_of(run: str) -> str:
    """The runs a mean is taken over: the same place but for the seed, and the same method."""
    path = Path(run)
    cell = re.sub(r"_?seed\d+", "", path.parent.name)
    return f"{path.parent.parent.name}/{cell} {path.name}"


def table(rows: list[dict]) -> str:
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(group_of(row["run"]), []).append(row)
    lines = [
        "| runs | n | precision / recall: one threshold | class by class | ROC AUC: one threshold | class by class "
        "| precision of the first 100 / 1,000: one threshold | class by class "
        "| validation rows, precision / recall: one threshold | class by class |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, members in groups.items():

        def mean(rule, metric, members=members):
            values = [m[rule][metric] for m in members]
            return float(np.mean([np.nan if v is None else v for v in values]))

        cells = [name, str(len(members))]
        for prefix in ("", "validation_"):
            for rule in ("one_threshold", "class_by_class"):
                cells.append(f"{mean(rule, prefix + 'precision'):.3f} / {mean(rule, prefix + 'recall'):.3f}")
            if not prefix:
                cells += [f"{mean(rule, 'roc_auc'):.3f}" for rule in ("one_threshold", "class_by_class")]
                cells += [
                    f"{mean(rule, 'precision_at_100'):.2f} / {mean(rule, 'precision_at_1000'):.3f}"
                    for rule in ("one_threshold", "class_by_class")
                ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv) -> None:
    del argv
    from absl import flags

    from limit_tf import cli, workdir

    f = flags.FLAGS
    found = sorted({p for pattern in f.runs for p in glob.glob(pattern)})
    runs_ = [p for p in found if (Path(p) / workdir.BEST_WEIGHTS).is_file() or (Path(p) / workdir.BEST_MODEL).is_file()]
    if not runs_:
        cli.fail(f"--runs={','.join(f.runs)} matches no finished run.")
    rows = [row for run in runs_ if (row := one_run(run)) is not None]
    if not rows:
        cli.fail("none of the runs has a known truth.")
    out = Path(f.out)
    workdir.write_text(out.with_suffix(".json"), json.dumps({"runs": rows}, indent=1))
    workdir.write_text(out.with_suffix(".md"), table(rows))
    print(table(rows))
    print(f"written: {out.with_suffix('.json')}, {out.with_suffix('.md')}")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    from limit_tf import cli

    cli.run(main, define_flags)
