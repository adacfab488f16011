r"""Speed of the per-epoch evaluation's inference pass: batch norm folded or not, XLA or not.

    LIMIT_DATA_DIR=../shared/data python benchmarks/eval_speed.py
    LIMIT_DATA_DIR=../shared/data python benchmarks/eval_speed.py --batches=1024,4096 --repeats=7

After every epoch the protocol runs the classifier in inference mode over
the validation split (12,000 MNIST examples) and the training split
(``limit_tf.callbacks.EpochEvaluation``). This times that pass over the
real validation inputs, fed as the runner feeds them
(``limit_tf.data.to_tf_dataset``), for the paper's MNIST CNN (the
classifier's architecture), in every combination of

- ``network``: the Keras network as it is, or ``folded``: its batch norms
  folded into the convolutions before them (``limit_tf.inference``);
- ``jit``: the ``tf.function`` compiled with XLA or not;
- the inference batch size (``--batches``).

The batch norms get random statistics first, and every combination's
logits are checked against the network's own (``max_abs_diff``, and whether
any prediction differs). Settings are interleaved ``--repeats`` times in one
process after a warm-up pass each; the median time is reported, in
microseconds per example and as a share of the cores' float32 peak (the
forward pass's FLOPs counted from the layers). Prints a table and writes
JSON (``--out``); compare figures from one run only.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

from limit_tf import cli  # noqa: E402

FLAGS = cli.FLAGS
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def forward_flops(network) -> float:
    """FLOPs per example of one inference pass through the convolutions and dense layers."""
    import keras

    total = 0.0
    for layer in network.layers:
        if isinstance(layer, keras.layers.Conv2D):
            out_h, out_w, filters = layer.output.shape[1:]
            kh, kw = layer.kernel_size
            total += 2.0 * out_h * out_w * filters * kh * kw * layer.input.shape[-1]
        elif isinstance(layer, keras.layers.Dense):
            total += 2.0 * layer.input.shape[-1] * layer.units
    return total


def main(argv) -> None:
    del argv
    args = FLAGS
    try:
        batches = [int(b) for b in args.batches.split(",")]
    except ValueError:
        sys.exit(f"error: --batches={args.batches!r} is not a comma-separated list of integers.")
    if args.repeats < 1 or min(batches) < 1:
        sys.exit(f"error: --repeats={args.repeats} and --batches={args.batches} must be >= 1.")

    from limit_tf import data as data_lib  # noqa: I001 (first: it imports TensorFlow without its start-up lines)
    from limit_tf import inference, models, workdir

    import keras
    import numpy as np
    import tensorflow as tf
    from throughput import peak_gflops

    tf.get_logger().setLevel("ERROR")  # one tf.function per setting: the retracing notices are expected

    dataset = data_lib.load_noisy_dataset(
        "mnist", data_dir=args.data_dir, num_train_examples=1000, noise="uniform", noise_rate=0.8, seed=0
    )
    keras.utils.set_random_seed(0)
    network = models.build_model("mnist_cnn", dataset.num_classes, dataset.input_shape)
    rng = np.random.default_rng(0)
    for layer in network.layers:  # statistics as after training, so that a wrong fold would show
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0.0, 0.5, layer.moving_mean.shape).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.2, 3.0, layer.moving_variance.shape).astype(np.float32))
    folded = inference.FoldedInference(network)
    folded.sync()
    flops = forward_flops(network)
    peak = peak_gflops()
    inputs = {b: data_lib.to_tf_dataset(dataset, "validation", batch_size=b, inputs_only=True) for b in batches}
    examples = len(dataset.validation)
    runners = {}
    for b in batches:
        for name, model in (("network", network), ("folded", folded.model)):
            for jit in (False, True):
                fn = tf.function(
                    lambda x, m=model: tf.cast(m(x, training=False), tf.float32), jit_compile=jit, reduce_retracing=True
                )
                runners[(name, jit, b)] = fn
    reference = np.concatenate([network(x, training=False).numpy() for x in inputs[batches[0]]])

    def run(key):
        return np.concatenate([runners[key](x).numpy() for x in inputs[key[2]]])

    checks = {}
    for key in runners:
        logits = run(key)  # the warm-up: tracing and compilation
        checks[key] = (
            float(np.abs(logits - reference).max()),
            int((logits.argmax(1) != reference.argmax(1)).sum()),
        )
    times = {key: [] for key in runners}
    for _ in range(args.repeats):
        for key in runners:
            start = time.perf_counter()
            run(key)
            times[key].append(time.perf_counter() - start)
    rows = []
    for (name, jit, b), ts in times.items():
        seconds = statistics.median(ts)
        us = 1e6 * seconds / examples
        rows.append(
            {
                "network": name,
                "jit": jit,
                "batch": b,
                "examples": examples,
                "median_s": round(seconds, 4),
                "us_per_example": round(us, 2),
                "gflops": round(flops / us / 1e3, 1),
                "share_of_peak": round(flops / us / 1e3 / peak, 3),
                "max_abs_diff": checks[(name, jit, b)][0],
                "predictions_changed": checks[(name, jit, b)][1],
                "all_s": [round(t, 4) for t in ts],
            }
        )
    print(f"{examples} validation examples, forward pass {flops / 1e6:.2f} MFLOP/example, peak {peak:.0f} GFLOP/s")
    print(f"{'network':<8} {'jit':<5} {'batch':>5} {'us/ex':>7} {'GFLOP/s':>8} {'peak %':>6} {'max |diff|':>10}")
    for r in rows:
        print(
            f"{r['network']:<8} {str(r['jit']):<5} {r['batch']:>5} {r['us_per_example']:>7.1f} {r['gflops']:>8.1f} "
            f"{100 * r['share_of_peak']:>6.1f} {r['max_abs_diff']:>10.2e}"
        )
    report = {
        "folded_batch_norms": folded.folded,
        "forward_mflop_per_example": round(flops / 1e6, 3),
        "peak_gflops": round(peak, 1),
        "threads": {
            "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
            "cpus": len(os.sched_getaffinity(0)),
        },
        "rows": rows,
        "versions": workdir.library_versions(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    workdir.write_json(args.out, report)
    print(f"written: {args.out}")


def define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("batches", "1024", "Inference batch sizes, comma-separated.")
    flags.DEFINE_integer("repeats", 5, "Timings per measurement; the median is reported.")
    flags.DEFINE_string("data_dir", None, "Directory with the original data files (default: $LIMIT_DATA_DIR).")
    cli.define_shared_flags(out=(str(HERE / "results" / "eval_speed.json"), "the JSON."))


if __name__ == "__main__":
    cli.run(main, define_flags)
