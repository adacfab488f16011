"""``python -m limit_tf.detection --run=RUN``: find the training labels of a finished run that look wrong.

Reads the run with :mod:`limit_tf.runs`, scores and ranks with
:mod:`limit_tf.detection`, writes ``<run>/detection_<score>/``
(:mod:`limit_tf.issue_report`) and prints what it found.
"""

from __future__ import annotations

from limit_tf import detection


def parse_budget(text: str | None):
    """``--budget``: an integer count or a fraction in (0, 1]."""
    if text is None:
        return None
    try:
        return float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        raise ValueError(
            f"--budget={text!r} is not allowed: give a count (e.g. 500) or a fraction (e.g. 0.2)."
        ) from None


def main(argv) -> None:
    """``python -m limit_tf.detection --workdir=RUN [--score=limit] [--budget=N | --threshold=T] [--noper_class]``."""
    del argv
    from absl import flags

    from limit_tf import cli, issue_report, runs

    f = flags.FLAGS
    if not f.run:
        cli.fail("--run is required: the work dir of a run of limit_tf.main (or --workdir, the same flag).")
    try:
        report = runs.detect_in_run(
            f.run, score=f.score, threshold=f.threshold, budget=parse_budget(f.budget), per_class=f.per_class
        )
    except (FileNotFoundError, ValueError) as e:
        cli.fail(str(e))
    print(issue_report.describe(report, runs.output_dir(f.run, report["score"])))


def define_flags() -> None:
    from absl import flags

    from limit_tf import cli

    cli.define_shared_flags(run=None)
    flags.DEFINE_alias("workdir", "run")
    flags.DEFINE_string(
        "score", None, f"Score: {', '.join(detection.SCORES)} (default: limit for LIMIT runs, else self_confidence)."
    )
    flags.DEFINE_float("threshold", None, "Flag examples whose score is at least this.")
    flags.DEFINE_string(
        "budget", None, "Flag this many examples (int) or this fraction (float); default: the estimated number."
    )
    flags.DEFINE_bool(
        "per_class",
        True,
        "Flag the estimated number class by class, where the estimate finds the wrong labels (--noper_class: "
        "the most suspicious over all examples). --budget and --threshold apply over all examples.",
    )


if __name__ == "__main__":
    from limit_tf import cli

    cli.run(main, define_flags)
