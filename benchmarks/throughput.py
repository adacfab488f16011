r"""Training-step throughput of CE and LIMIT on the paper's MNIST CNN.

    python benchmarks/throughput.py                      # real MNIST from $LIMIT_DATA_DIR
    python benchmarks/throughput.py --variants=ce,limit_l --jit=off --repeats=3

For every variant (CE; LIMIT_G and LIMIT_L, with and without sampling) and
``jit_compile`` off and on, it builds the model exactly as the runner does
(``limit_tf.builders``), then times the compiled training function that
``fit`` calls, fed by the runner's own input pipeline
(``limit_tf.data.training_stream``): warm-up steps first (tracing,
compilation), then ``--repeats`` timings of ``--steps`` steps each, of
which the median is reported. Also measured:

- the same steps fed from one batch already in memory, so that
  ``input_share = 1 - t(in memory) / t(pipeline)`` is the part of a step
  spent waiting for the input pipeline (0 when prefetching hides it; a
  difference of two timings, so it carries their noise, a few %);
- the pipeline alone (batches pulled, no training): ``input_share_bound =
  t(batch) / t(step)`` bounds what the pipeline can cost a step even if
  prefetching hid none of it;
- LIMIT's step time over CE's, in the same run and jit mode;
- the floating-point work of one step, counted from the layers (every
  convolution and dense layer of every trained network: forward, the
  weights' gradient, and the inputs' gradient except for the first layer,
  which needs none; batch norm, activations, losses and the optimizer are
  element-wise, a few % of it, and left out), the GFLOP/s achieved and
  their share of the two cores' peak (AVX2 with two FMA units per core: 32
  float32 FLOP per cycle per core at the nominal clock of /proc/cpuinfo);
- with ``--plain_conv``, every variant also with Keras' own ``Conv2D`` in
  place of ``limit_tf.models.Conv2D`` (the whole-input convolution as a
  convolution): the before/after of that change, from the same run;
- the peak resident memory of the process that ran the variant (each
  variant runs in a fresh process).

Every setting of the runner is a flag here too (``--batch_size``,
``--num_train_examples``, ``--q_architecture``, ...). Prints a table and
writes JSON (``--out``). Timings depend on the machine and on what else runs
on it; compare figures from one run.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path

from limit_tf import cli, methods

HERE = Path(__file__).resolve().parent
VARIANTS = (methods.CE, *methods.variants_of(methods.LIMIT, paper_only=True))
DEFAULTS = {"num_train_examples": 10_000, "noise_rate": 0.8, "beta": 10.0, "sigma_q": 0.1}
FLAGS = cli.FLAGS


def define_flags() -> None:
    from absl import flags

    cli.define_config_flags(exclude=("workdir", "method", "predictor", "sample", "jit_compile"), defaults=DEFAULTS)
    cli.define_shared_flags(variants=list(VARIANTS), out=(str(HERE / "results" / "throughput.json"), "the JSON."))
    flags.DEFINE_list("jit", ["off", "on"], "jit_compile modes to time: off, on.")
    flags.DEFINE_integer("untimed_steps", 10, "Untimed steps first (tracing, XLA compilation).")
    flags.DEFINE_integer("steps", 20, "Steps per timing.")
    flags.DEFINE_integer("repeats", 5, "Timings per measurement; the median is reported.")
    flags.DEFINE_integer("rounds", 1, "Fresh processes per variant, interleaved across variants; medians reported.")
    flags.DEFINE_string("label", "", "A note stored with the results (e.g. 'before', 'after').")
    flags.DEFINE_bool("plain_conv", False, "Also time every variant with Keras' own Conv2D (the before).")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _time_steps(train_function, iterator, steps: int) -> float:
    """Seconds per step over ``steps`` steps."""
    start = time.perf_counter()
    for _ in range(steps):
        logs = train_function(iterator)
    # The last step's outputs force the queued work to finish.
    _ = {k: float(v) for k, v in logs.items()}
    return (time.perf_counter() - start) / steps


def layer_flops(network, *, first_needs_input_grad: bool = False) -> float:
    """FLOPs per example of one training step of ``network``'s convolutions and dense layers."""
    import keras

    total, first = 0.0, True
    for layer in network.layers:
        if isinstance(layer, keras.layers.Conv2D):
            out_h, out_w, filters = layer.output.shape[1:]
            kh, kw = layer.kernel_size
            macs = out_h * out_w * filters * kh * kw * layer.input.shape[-1]
        elif isinstance(layer, keras.layers.Dense):
            macs = layer.input.shape[-1] * layer.units
        else:
            continue
        passes = 2 if first and not first_needs_input_grad else 3  # forward, weights' grad, inputs' grad
        total += 2.0 * macs * passes
        first = False
    return total


def peak_gflops() -> float:
    """The usable cores' float32 peak: 32 FLOP per cycle per core (AVX2, two FMA units) at the nominal clock."""
    mhz = [float(line.split(":")[1]) for line in Path("/proc/cpuinfo").read_text().splitlines() if "cpu MHz" in line]
    return len(os.sched_getaffinity(0)) * 32 * (max(mhz) if mhz else 2000.0) / 1000.0


def measure(
    variant: str, config_values: dict, *, warmup_steps: int, steps: int, repeats: int, plain_conv: bool = False
) -> dict:
    """One variant in this process (run it in a fresh one: peak memory is the process's)."""
    import keras
    import tensorflow as tf

    from limit_tf import builders, models, train
    from limit_tf import data as data_lib
    from limit_tf.config import ExperimentConfig

    if plain_conv:  # the before: Keras' convolution for the whole-input case too
        models.Conv2D.call = keras.layers.Conv2D.call

    config = ExperimentConfig.from_dict({**config_values, **methods.variant_settings(variant)})
    dataset = train.load_data(config)
    config = config.for_data(dataset.input_shape, len(dataset.train))
    keras.utils.set_random_seed(config.seed)
    ctx = builders.MethodContext(config=config, num_classes=dataset.num_classes, input_shape=dataset.input_shape)
    model = builders.build_method(ctx)
    model.make_train_function()
    train_function = model.train_function
    batch_size = config.batch_size
    total = warmup_steps + 3 * steps * repeats
    epochs = -(-total * batch_size // len(dataset.train)) + 1
    stream, _ = data_lib.training_stream(dataset, batch_size=batch_size, epochs=epochs, seed=config.seed)
    pipeline = iter(stream)
    first = next(iter(stream))
    in_memory = iter(tf.data.Dataset.from_tensors(first).repeat())
    _time_steps(train_function, pipeline, warmup_steps)
    _time_steps(train_function, in_memory, warmup_steps)
    piped, cached = [], []
    for _ in range(repeats):  # interleaved, so that drifts in machine load hit both alike
        piped.append(_time_steps(train_function, pipeline, steps))
        cached.append(_time_steps(train_function, in_memory, steps))
    t_pipe, t_mem = statistics.median(piped), statistics.median(cached)
    alone = []  # the pipeline by itself, no training: its cost per batch
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            next(pipeline)
        alone.append((time.perf_counter() - start) / steps)
    t_input = statistics.median(alone)
    networks = [builders.classifier_of(model)]
    if builders.predictor_of(model) is not None:
        networks.append(builders.predictor_of(model))
    flops = batch_size * sum(layer_flops(n) for n in networks)
    return {
        "variant": variant + ("_plain_conv" if plain_conv else ""),
        "jit_compile": config.jit_compile,
        "gflop_per_step": round(flops / 1e9, 3),
        "gflops": round(flops / t_pipe / 1e9, 1),
        "share_of_peak": round(flops / t_pipe / 1e9 / peak_gflops(), 3),
        "step_ms": round(1000 * t_pipe, 2),
        "step_ms_in_memory": round(1000 * t_mem, 2),
        "examples_per_s": round(batch_size / t_pipe, 1),
        "input_share": round(max(0.0, 1.0 - t_mem / t_pipe), 4),
        "input_ms_per_batch_alone": round(1000 * t_input, 3),
        "input_share_bound": round(t_input / t_pipe, 4),
        "step_ms_all": [round(1000 * t, 2) for t in piped],
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def _medians(results: list[dict]) -> list[dict]:
    """One row per (variant, jit): the round with the median step time, and every round's step time."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["variant"], r["jit_compile"]), []).append(r)
    out = []
    for rows in groups.values():
        rows = sorted(rows, key=lambda r: r["step_ms"])
        median = dict(rows[(len(rows) - 1) // 2])
        median["step_ms_rounds"] = [r["step_ms"] for r in rows]
        out.append(median)
    return out


def _in_fresh_process(*args, **kwargs) -> dict:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(measure, *args, **kwargs).result()


def main(argv) -> None:
    del argv
    from limit_tf import train, workdir
    from limit_tf.config import ConfigError

    unknown = [v for v in FLAGS.variants if v not in methods.VARIANTS]
    if unknown:
        raise ConfigError(f"--variants: {unknown[0]!r} is not allowed; allowed: {', '.join(methods.VARIANTS)}.")
    bad_jit = [j for j in FLAGS.jit if j not in ("off", "on")]
    if bad_jit:
        raise ConfigError(f"--jit: {bad_jit[0]!r} is not allowed; allowed: off, on.")
    for name in ("steps", "repeats"):
        if FLAGS[name].value < 1:
            raise ConfigError(f"--{name}={FLAGS[name].value} is not allowed: it must be an integer >= 1.")
    base = cli.config_from_flags(workdir=str(HERE / "runs" / "throughput"))
    for variant in FLAGS.variants:
        base.replace(**methods.variant_settings(variant)).validate()
    train.prepare(base)  # fails fast on missing data, before any child starts
    print(f"peak: {peak_gflops():.0f} GFLOP/s ({len(os.sched_getaffinity(0))} cores)")
    print(
        f"{'variant':<18} {'jit':<4} {'step ms':>8} {'ex/s':>8} {'GFLOP/s':>8} {'peak %':>7} {'input %':>8} "
        f"{'bound %':>8} {'peak MB':>8}",
        flush=True,
    )
    results = []
    for jit in FLAGS.jit:
        for _ in range(FLAGS.rounds):
            for variant in FLAGS.variants:
                for plain in (False, True) if FLAGS.plain_conv else (False,):
                    values = base.replace(jit_compile=jit == "on").to_dict()
                    r = _in_fresh_process(
                        variant,
                        values,
                        warmup_steps=FLAGS.untimed_steps,
                        steps=FLAGS.steps,
                        repeats=FLAGS.repeats,
                        plain_conv=plain,
                    )
                    results.append(r)
                    print(
                        f"{r['variant']:<18} {jit:<4} {r['step_ms']:>8.1f} {r['examples_per_s']:>8.0f} "
                        f"{r['gflops']:>8.1f} {100 * r['share_of_peak']:>7.1f} {100 * r['input_share']:>8.1f} "
                        f"{100 * r['input_share_bound']:>8.1f} {r['peak_rss_mb']:>8.0f}",
                        flush=True,
                    )
    results = _medians(results)
    ratios = {}
    for r in results:
        same_conv = methods.CE + ("_plain_conv" if r["variant"].endswith("_plain_conv") else "")
        ce = next((c for c in results if c["variant"] == same_conv and c["jit_compile"] == r["jit_compile"]), None)
        if ce is not None and r["variant"] != same_conv:
            r["ratio_to_ce"] = round(r["step_ms"] / ce["step_ms"], 3)
            ratios[f"{r['variant']}/ce jit={'on' if r['jit_compile'] else 'off'}"] = r["ratio_to_ce"]
    for key, value in ratios.items():
        print(f"{key}: {value:.2f}x")
    report = {
        "label": FLAGS.label,
        "settings": {
            "config": base.to_dict(),
            "untimed_steps": FLAGS.untimed_steps,
            "steps": FLAGS.steps,
            "repeats": FLAGS.repeats,
            "rounds": FLAGS.rounds,
        },
        "peak_gflops": round(peak_gflops(), 1),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0)),
            **workdir.library_versions(),
        },
        "results": results,
        "ratios_to_ce": ratios,
        "peak_rss_mb_max": max(r["peak_rss_mb"] for r in results),
    }
    out = Path(FLAGS.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    workdir.write_text(out, json.dumps(report, indent=2) + "\n")
    print(f"written: {out}")


if __name__ == "__main__":
    cli.run(main, define_flags)
