r"""What the paper's protocol costs beyond the training steps: epoch wall time / training-step time.

    LIMIT_DATA_DIR=../shared/data python benchmarks/protocol_overhead.py
    LIMIT_DATA_DIR=../shared/data python benchmarks/protocol_overhead.py --sizes=1000 --epochs=3

Each epoch of the runner (``limit_tf.train.run_experiment``) trains, then
evaluates: validation accuracy and loss (model selection), the memorization
metrics over the training set, optionally the clean test accuracy monitor
(``--track_test_accuracy``), and writes the checkpoint and the work dir's
files. Per method (CE, LIMIT_L) and training-set size, this runs the
runner for ``--epochs`` epochs with a timing callback installed after the
protocol's own and reports, over the epochs after the first (which traces
and compiles), the median of

- ``train_s``: from the epoch's start to the end of its last training step;
- ``epoch_s``: from the epoch's start to the next one's (the last epoch: to
  the end of its last callback);
- ``ratio`` = epoch_s / train_s (1.0 = no overhead).

Each setting runs in a fresh process, and the settings are interleaved
over ``--rounds`` rounds; the JSON keeps every round. Compare only figures
from one run of this script: this machine's speed drifts between runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

from limit_tf import cli  # noqa: E402

FLAGS = cli.FLAGS
METHODS = {"ce": {"method": "ce"}, "limit_l": {"method": "limit", "predictor": "laplace", "beta": 10.0}}


def measure(method: str, n: int, epochs: int, track_test: bool, data_dir: str | None) -> dict:
    """One setting in this process: per-epoch training and wall times."""
    import keras

    from limit_tf import train
    from limit_tf.config import ExperimentConfig

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.begin, self.train_end, self.end = [], [], []
            self.steps = None

        def on_epoch_begin(self, epoch, logs=None):
            self.begin.append(time.perf_counter())

        def on_train_batch_end(self, batch, logs=None):
            if len(self.train_end) < len(self.begin):
                self.train_end.append(None)
            self.train_end[-1] = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.end.append(time.perf_counter())

    timer = Timer()
    with tempfile.TemporaryDirectory() as tmp:
        config = ExperimentConfig(
            workdir=str(Path(tmp) / "run"),
            dataset="mnist",
            data_dir=data_dir,
            num_train_examples=n,
            noise="uniform",
            noise_rate=0.8,
            epochs=epochs,
            patience=epochs,
            track_test_accuracy=track_test,
            **METHODS[method],
        )
        train.run_experiment(config, callbacks=[timer])
    begins = [*timer.begin[1:], timer.end[-1]]
    epoch_s = [b - a for a, b in zip(timer.begin, begins, strict=True)][1:]
    train_s = [t - a for a, t in zip(timer.begin, timer.train_end, strict=True)][1:]
    return {
        "epoch_s": epoch_s,
        "train_s": train_s,
        "median_epoch_s": float(np.median(epoch_s)),
        "median_train_s": float(np.median(train_s)),
        "ratio": float(np.median(np.asarray(epoch_s) / np.asarray(train_s))),
    }


def main(argv) -> None:
    del argv
    args = FLAGS
    if args.one:
        method, n, test = args.one.split(",")
        print(json.dumps(measure(method, int(n), args.epochs, test == "on", args.data_dir)))
        return
    versions = dict(item.split("=", 1) for item in args.code.split(","))
    settings = [
        (v, m, int(n), t)
        for v in versions
        for m in args.methods.split(",")
        for n in args.sizes.split(",")
        for t in args.test_monitor.split(",")
    ]
    for _, m, _, t in settings:
        if m not in METHODS or t not in ("on", "off"):
            sys.exit(f"error: --methods takes {', '.join(METHODS)} and --test_monitor on/off; got {m!r}, {t!r}.")
    out = Path(args.out)
    rounds = []
    for r in range(args.rounds):
        for v, m, n, t in settings:
            command = [sys.executable, __file__, f"--one={m},{n},{t}", f"--epochs={args.epochs}"]
            if args.data_dir:
                command.append(f"--data_dir={args.data_dir}")
            env = {**os.environ, "PYTHONPATH": str(Path(versions[v]).resolve())}
            done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
            if done.returncode:
                sys.exit(f"error: {v} {m} n={n} test monitor {t} failed:\n{done.stderr[-3000:]}")
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            rounds.append({"round": r, "code": v, "method": m, "n": n, "test_monitor": t, **figures})
            print(
                f"round {r} {v:6s} {m:8s} n={n:<6d} test monitor {t:3s}: epoch {figures['median_epoch_s']:.2f} s, "
                f"training steps {figures['median_train_s']:.2f} s, ratio {figures['ratio']:.2f}",
                flush=True,
            )
    summary = {}
    for v, m, n, t in settings:
        mine = [x for x in rounds if (x["code"], x["method"], x["n"], x["test_monitor"]) == (v, m, n, t)]
        summary[f"{v}: {m} n={n} test_monitor={t}"] = {
            key: float(np.median([x[key] for x in mine])) for key in ("median_epoch_s", "median_train_s", "ratio")
        }
    from limit_tf import workdir

    report = {"epochs": args.epochs, "code": versions, "summary": summary, "rounds": rounds}
    report["versions"] = workdir.library_versions()
    out.parent.mkdir(parents=True, exist_ok=True)
    workdir.write_text(out, json.dumps(report, indent=2) + "\n")
    for key, s in summary.items():
        print(f"{key}: ratio {s['ratio']:.2f} (epoch {s['median_epoch_s']:.2f} s, steps {s['median_train_s']:.2f} s)")
    print(f"written: {out}")


def define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("methods", "ce,limit_l", "Variants to time, comma-separated.")
    flags.DEFINE_string("sizes", "1000,10000", "Training-set sizes n, comma-separated.")
    flags.DEFINE_string("test_monitor", "off,on", "Without and/or with --track_test_accuracy.")
    flags.DEFINE_integer("epochs", 4, "Epochs per measurement.")
    flags.DEFINE_integer("rounds", 2, "Fresh processes per setting, interleaved.")
    flags.DEFINE_string("data_dir", None, "Directory with the original data files (default: $LIMIT_DATA_DIR).")
    flags.DEFINE_string(
        "code",
        f"now={HERE.parent}",
        "Code versions to compare, interleaved: LABEL=CHECKOUT,... (e.g. before=/tmp/old,now=.).",
    )
    cli.define_shared_flags(out=(str(HERE / "results" / "protocol_overhead.json"), "the JSON."))
    flags.DEFINE_string("one", None, "Internal: measure method,n,test in this process.")


if __name__ == "__main__":
    cli.run(main, define_flags)
