r"""A keras.applications body end to end on CIFAR-10 photographs, and what it costs per image.

    python benchmarks/backbone.py                                    # MobileNetV3Small, random start, 2,000 photos
    python benchmarks/backbone.py --bodies=MobileNetV3Small,EfficientNetV2B0 --image_sizes=32,64 --epochs=2

For each body and image size: a folder of ``--n`` CIFAR-10 training
photographs (the first n of the shared JPEG copy, resized by the loader with
``--image_size``) and 1,000 test photographs, one LIMIT run from the command
line (``--architecture=keras:NAME --weights=none``: no network here), and
from its ``results.json`` and log the training time per image (the epochs'
wall time over the images seen) and the clean test accuracy after
``--epochs``. ImageNet weights (``--weights=imagenet --allow_download``) are
the point of a body in practice; they need a network connection, so this
measures the path and its cost, not what the weights are worth. Results go
to ``--out`` (.json, .md).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def define_flags() -> None:
    from absl import flags

    flags.DEFINE_list(
        "bodies", ["MobileNetV3Small"], "keras.applications bodies (names of limit_tf.methods.BACKBONES)."
    )
    flags.DEFINE_list("image_sizes", ["32"], "Square sizes the loader resizes the photographs to.")
    flags.DEFINE_integer("n", 2_000, "Training photographs (80% train, 20% validation).")
    flags.DEFINE_integer("epochs", 2, "Epochs per run.")
    flags.DEFINE_string("data_dir", None, "Holds cifar10_jpeg/ (default: $LIMIT_DATA_DIR).")
    from limit_tf import cli

    cli.define_shared_flags(
        root=str(HERE / "runs" / "backbone"),
        out=(str(HERE / "results" / "backbone"), "a path prefix (.json and .md added)."),
    )


def main(argv) -> None:
    del argv
    import real_noise  # beside this script: the folder writer
    from absl import flags

    from limit_tf import methods, workdir

    f = flags.FLAGS
    unknown = sorted(set(f.bodies) - set(methods.BACKBONES))
    if unknown:
        raise SystemExit(f"error: --bodies={unknown[0]} is not allowed; allowed: {', '.join(methods.BACKBONES)}.")
    source = real_noise.cifar_source(f.data_dir)
    root = Path(f.root)
    folder = root / f"cifar_n{f.n}"
    real_noise._write_clean(source, folder, f.n, 1_000)
    rows = []
    for body in f.bodies:
        for size in (int(s) for s in f.image_sizes):
            run = root / f"{body}_s{size}_e{f.epochs}"
            args = [
                "-m",
                "limit_tf.main",
                f"--dataset=folder:{folder / 'train'}",
                f"--test_data={folder / 'test'}",
                f"--image_size={size}",
                "--method=limit",
                f"--architecture=keras:{body}",
                "--weights=none",
                f"--epochs={f.epochs}",
                f"--workdir={run}",
            ]
            start = time.perf_counter()
            with open(root / f"{run.name}.log", "a") as log:
                done = subprocess.run([sys.executable, *args], stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
            if done.returncode:
                raise SystemExit(f"error: the {body} run failed (exit {done.returncode}); see {root / run.name}.log")
            results = json.loads((run / "results.json").read_text())
            seen = results["num_train_examples_used"] * results["epochs_run"]
            rows.append(
                {
                    "body": body,
                    "image_size": size,
                    "epochs": results["epochs_run"],
                    "train_images": results["num_train_examples_used"],
                    "train_ms_per_image": 1000 * results["train_wall_time_s"] / seen,
                    "command_s": time.perf_counter() - start,
                    "test_accuracy": results["test_accuracy"],
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    lines = [
        "| body | image size | epochs | training ms per image (LIMIT: both networks; the epochs with their evaluation) | clean test (random start) |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['body']} | {r['image_size']} | {r['epochs']} | {r['train_ms_per_image']:.1f} | "
        f"{100 * r['test_accuracy']:.1f}% |"
        for r in rows
    ]
    workdir.write_report(f.out, {"n": f.n, "rows": rows}, "\n".join(lines))


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(REPO))
    from limit_tf import cli

    cli.run(main, define_flags)
