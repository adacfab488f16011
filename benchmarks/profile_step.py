r"""Where one training step's time goes, op by op (TensorFlow profiler).

    python benchmarks/profile_step.py                          # LIMIT_L on the paper's MNIST CNN
    python benchmarks/profile_step.py --variant=ce --steps=20

Builds the variant as the runner does, runs warm-up steps, then records
``--steps`` steps with ``tf.profiler`` and reads the trace (``.xplane.pb``):
the time of every TensorFlow op, summed over the recorded steps and both
compute threads, grouped by op type and by layer, per step. Prints the top
entries and writes JSON (``--out``). The op times add up to the CPU time
the two cores spent in ops; the step's wall time is printed beside them.
"""

from __future__ import annotations

import collections
import glob
import json
import tempfile
import time
from pathlib import Path

from limit_tf import cli, methods

HERE = Path(__file__).resolve().parent
FLAGS = cli.FLAGS


def define_flags() -> None:
    from absl import flags

    cli.define_config_flags(
        exclude=("workdir", "method", "predictor", "sample"),
        defaults={"num_train_examples": 10_000, "noise_rate": 0.8, "beta": 10.0, "sigma_q": 0.1},
    )
    flags.DEFINE_string("variant", "limit_l", "Method variant (limit_tf.methods.VARIANTS).")
    flags.DEFINE_integer("untimed_steps", 10, "Untimed steps first.")
    flags.DEFINE_integer("steps", 10, "Recorded steps.")
    cli.define_shared_flags(out=(str(HERE / "results" / "profile_step.json"), "the JSON."))


def op_times(trace_dir: str) -> dict[str, float]:
    """Op name -> total seconds, from the host plane of the newest trace under ``trace_dir``."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    path = sorted(glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True))[-1]
    space = xplane_pb2.XSpace()
    space.ParseFromString(Path(path).read_bytes())
    totals = collections.Counter()
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute") and line.name != "python":
                continue
            for event in line.events:
                name = names.get(event.metadata_id, "")
                if ":" in name and "/" in name:  # a graph op "<scope>/<name>:<type>"
                    totals[name] += event.duration_ps * 1e-12
    return dict(totals)


def _layer(op_name: str) -> str:
    scope = op_name.split(":")[0].replace("StatefulPartitionedCall/", "").replace("gradient_tape/", "grad/")
    parts = scope.split("/")
    return "/".join(parts[:3]) if parts[0] == "grad" else "/".join(parts[:2])


def main(argv) -> None:
    del argv
    import keras
    import tensorflow as tf

    from limit_tf import builders, train, workdir
    from limit_tf import data as data_lib

    config = cli.config_from_flags(workdir="profile", **methods.variant_settings(FLAGS.variant)).validate()
    dataset = train.load_data(config)
    config = config.for_data(dataset.input_shape, len(dataset.train))
    keras.utils.set_random_seed(config.seed)
    model = builders.build_method(builders.MethodContext(config, dataset.num_classes, dataset.input_shape))
    model.make_train_function()
    stream, _ = data_lib.training_stream(dataset, batch_size=config.batch_size, epochs=100, seed=config.seed)
    iterator = iter(stream)

    def run(steps):
        start = time.perf_counter()
        for _ in range(steps):
            logs = model.train_function(iterator)
        _ = float(logs["loss"])
        return (time.perf_counter() - start) / steps

    run(FLAGS.untimed_steps)
    plain = run(FLAGS.steps)
    with tempfile.TemporaryDirectory() as trace_dir:
        tf.profiler.experimental.start(trace_dir)
        profiled = run(FLAGS.steps)
        tf.profiler.experimental.stop()
        ops = op_times(trace_dir)
    per_step = {name: seconds / FLAGS.steps for name, seconds in ops.items()}
    by_type, by_layer = collections.Counter(), collections.Counter()
    for name, seconds in per_step.items():
        by_type[name.rsplit(":", 1)[1]] += seconds
        by_layer[_layer(name)] += seconds
    total = sum(per_step.values())
    print(
        f"{FLAGS.variant}: {1000 * plain:.1f} ms/step (profiled: {1000 * profiled:.1f}); ops {1000 * total:.1f} ms CPU"
    )
    for title, table in (("op type", by_type), ("layer", by_layer)):
        print(f"\n{'ms/step':>8} {'share':>6}  {title}")
        for key, seconds in table.most_common(15):
            print(f"{1000 * seconds:8.2f} {100 * seconds / total:5.1f}%  {key}")
    report = {
        "variant": FLAGS.variant,
        "config": config.to_dict(),
        "step_ms": round(1000 * plain, 2),
        "step_ms_profiled": round(1000 * profiled, 2),
        "op_cpu_ms_per_step": round(1000 * total, 2),
        "by_type_ms": {k: round(1000 * v, 3) for k, v in by_type.most_common()},
        "by_layer_ms": {k: round(1000 * v, 3) for k, v in by_layer.most_common()},
        "versions": workdir.library_versions(),
    }
    out = Path(FLAGS.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    workdir.write_text(out, json.dumps(report, indent=2) + "\n")
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    cli.run(main, define_flags)
