r"""When to trust a detection: detection's warning against the truth, on every finished run whose truth is known.

    python benchmarks/trust_check.py                                   # the runs of the benchmarks below
    python benchmarks/trust_check.py --runs='/tmp/cifar/runs/*'        # and others: run dirs or globs

A detection is *reliable* here when the truth agrees with what a person would
act on: ROC AUC of the score at least 0.85, at least 60% of the flagged
labels truly wrong, and the estimated share of wrong labels within 10
points. Per run it lists those figures with what detection knows without
the truth (the clean accuracy that the noise estimate implies on the
validation split, the classifier's mean confidence, the estimated share) and
whether ``limit_tf.detection.trust_warning`` warns, beside the earlier rule
(the lower of the implied accuracy and the mean confidence under 70%).
Nothing is trained or detected again: the figures are those each run's
``detection.json`` recorded; the truth comes from the run itself (a
``--noise_rate`` run knows which labels it made wrong), or from
``real_noise.json`` and ``small_data.json`` for the folders and tables whose
truth stays outside the run. Writes ``--out`` (.json and .md).
"""

from __future__ import annotations

import glob
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RELIABLE = {"roc_auc": 0.85, "precision": 0.6, "estimate_error": 0.10}
EARLIER = 0.7  # the earlier rule: min(implied accuracy, mean confidence) under 70%


def define_flags() -> None:
    from absl import flags

    from limit_tf import cli

    flags.DEFINE_list(
        "runs",
        [str(HERE / "runs" / "noise_estimate" / "*" / "*" / "*")],
        "Run dirs (or globs) whose detection knows the truth (--noise_rate runs).",
    )
    flags.DEFINE_string("real_noise", str(HERE / "results" / "real_noise.json"), "real_noise.py's results.")
    flags.DEFINE_string("real_noise_root", str(HERE / "runs" / "real_noise"), "Where its runs are.")
    flags.DEFINE_string("small_data", str(HERE / "results" / "small_data.json"), "small_data.py's results.")
    flags.DEFINE_string("small_data_root", str(HERE / "runs" / "small_data_v3"), "Where its runs are.")
    cli.define_shared_flags(out=(str(HERE / "results" / "trust_check"), "a path prefix (.json and .md added)."))


def _detection(run: Path) -> dict | None:
    found = sorted(run.glob("detection_*/detection.json"))
    return json.loads(found[0].read_text()) if found else None


def _shown(run: Path) -> str:
    """The run's path relative to the repository when it lies inside it."""
    where = run.resolve()
    return str(where.relative_to(HERE.parent)) if where.is_relative_to(HERE.parent) else str(run)


def _row(run: Path, truth: dict) -> dict | None:
    """One run: what detection knew, the truth, and both rules' verdicts; None when it recorded no trust figures."""
    from limit_tf import detection

    found = _detection(run)
    if found is None or "clean_accuracy_by_noise_estimate" not in found:
        return None
    implied, estimate = found["clean_accuracy_by_noise_estimate"], found["estimated_noise_rate"]
    confidence = found.get("mean_confidence")
    error = estimate - truth["true_rate"]
    reliable = (
        truth["roc_auc"] >= RELIABLE["roc_auc"]
        and (truth["precision"] or 0) >= RELIABLE["precision"]
        and abs(error) <= RELIABLE["estimate_error"]
    )
    results = json.loads((run / "results.json").read_text())
    return {
        "run": _shown(run),
        "test_accuracy": results.get("test_accuracy"),
        "roc_auc": truth["roc_auc"],
        "precision": truth["precision"],
        "estimate_error": error,
        "reliable": reliable,
        "implied_accuracy": implied,
        "mean_confidence": confidence,
        "estimated_noise_rate": estimate,
        "warns": detection.trust_warning(implied, estimate) is not None,
        "warned_before": min(implied, confidence if confidence is not None else 1.0) < EARLIER,
    }


def collect(f) -> list[dict]:
    rows = []
    for pattern in f.runs:
        for run in sorted(Path(p) for p in glob.glob(pattern)):
            found = _detection(run) if run.is_dir() else None
            if found and found.get("roc_auc") is not None and (run / "results.json").is_file():
                truth = {
                    "roc_auc": found["roc_auc"],
                    "precision": found.get("precision"),
                    "true_rate": found["realized_noise_rate"],
                }
                rows.append(_row(run, truth))
    if Path(f.real_noise).is_file():
        import real_noise  # beside this script: its runs' names

        table = json.loads(Path(f.real_noise).read_text())
        for cell in table["cells"]:
            name = real_noise.cell_name(cell["kind"], cell["rate"], table["n"], cell["seed"])
            for r in cell["rows"]:
                if r.get("roc_auc") is not None and r["method"] != "cleanlab":
                    truth = {"roc_auc": r["roc_auc"], "precision": r["precision"], "true_rate": r["true_rate_train"]}
                    rows.append(_row(Path(f.real_noise_root) / name / r["method"], truth))
    if Path(f.small_data).is_file():
        for key, r in json.loads(Path(f.small_data).read_text())["runs"].items():
            truth = {"roc_auc": r["roc_auc"], "precision": r["precision"], "true_rate": r["true_noise_rate"]}
            rows.append(_row(Path(f.small_data_root) / "runs" / key, truth))
    return [r for r in rows if r is not None]


def summarize(rows: list[dict]) -> dict:
    def right(key):
        return sum(r[key] != r["reliable"] for r in rows)

    return {
        "runs": len(rows),
        "unreliable": sum(not r["reliable"] for r in rows),
        "verdicts_right": right("warns"),
        "verdicts_right_before": right("warned_before"),
        "false_alarms": sum(r["warns"] and r["reliable"] for r in rows),
        "missed": sum(not r["warns"] and not r["reliable"] for r in rows),
        "false_alarms_before": sum(r["warned_before"] and r["reliable"] for r in rows),
        "missed_before": sum(not r["warned_before"] and not r["reliable"] for r in rows),
    }


def to_markdown(rows: list[dict], summary: dict) -> str:
    def pct(x):
        return "-" if x is None else f"{100 * x:.1f}"

    lines = [
        "| run | clean test % | ROC AUC | precision | estimate error (points) | reliable | implied accuracy % "
        "| mean confidence % | estimated wrong % | warns | warned before |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['run']} | {pct(r['test_accuracy'])} | {r['roc_auc']:.3f} | {r['precision'] or 0:.3f} | "
            f"{100 * r['estimate_error']:+.1f} | {'yes' if r['reliable'] else 'no'} | {pct(r['implied_accuracy'])} | "
            f"{pct(r['mean_confidence'])} | {pct(r['estimated_noise_rate'])} | {'yes' if r['warns'] else ''} | "
            f"{'yes' if r['warned_before'] else ''} |"
        )
    s = summary

    def alarms(n):
        return f"{n} false alarm{'' if n == 1 else 's'}"

    lines.append("")
    lines.append(
        f"{s['runs']} runs, {s['unreliable']} unreliable. The warning: right on {s['verdicts_right']} "
        f"({alarms(s['false_alarms'])}, {s['missed']} missed); the earlier rule: right on "
        f"{s['verdicts_right_before']} ({alarms(s['false_alarms_before'])}, {s['missed_before']} missed)."
    )
    return "\n".join(lines) + "\n"


def main(argv) -> None:
    del argv
    from absl import flags

    from limit_tf import workdir

    f = flags.FLAGS
    rows = collect(f)
    if not rows:
        raise SystemExit("error: no finished run with a known truth and recorded trust figures was found.")
    summary = summarize(rows)
    workdir.write_report(f.out, {"summary": summary, "rows": rows}, to_markdown(rows, summary))


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(HERE.parent))
    from limit_tf import cli

    cli.run(main, define_flags)
