r"""Does memory grow with an image folder? Peak memory and speed of one epoch on 10,000 and 50,000 photographs.

    python benchmarks/folder_scale.py                         # 10k and 50k PNG folders, before and after
    python benchmarks/folder_scale.py --sizes=10000 --before_commit=   # the current code only

For each folder size (the first n CIFAR-10 training photographs of the shared
JPEG copy, written once as a class-per-folder PNG tree, plus 1,000 test
photographs) and each version of the code, two fresh processes:

- ``read``: the folder loaded as the runner loads it (every file checked)
  and one epoch of the training stream iterated without a model: the load
  time and the images per second the input pipeline delivers;
- ``train``: ``python -m limit_tf.main --method=limit --epochs=1`` with the
  defaults (the photo recipe: ResNet-20, batch 256, augmentation): the
  images per second of the training epoch (the epoch's wall time with its
  evaluation) and the whole command's wall time.

Each process's peak resident memory is read from the kernel (``wait4``'s
``ru_maxrss``); the folder check's cache is off, so every load is a first
check. "before" is the code at ``--before_commit`` (the last commit
that decoded a folder into one array), checked out as a git worktree under
``--root``; "after" is this checkout. Runs are interleaved (before and
after, size by size) so both see the same machine. The projection to
1,000,000 images extends the line through the two sizes' peaks. Results go
to ``--out`` (.json, .md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BEFORE_COMMIT = "7bdca55"  # the last commit whose folder loader built one array of every image
PROJECT_TO = 1_000_000

READ = r"""
import json, sys, time
start = time.perf_counter()
from limit_tf import data
ds = data.load_user_dataset("folder:" + sys.argv[1], test_data=sys.argv[2], seed=0)
loaded = time.perf_counter()
stream, steps = data.training_stream(ds, batch_size=256, epochs=1, seed=0)
count = 0
for x, _ in stream:
    count += int(x.shape[0])
done = time.perf_counter()
print("RESULT " + json.dumps({"load_s": loaded - start, "read_images_per_s": count / (done - loaded), "images": count}))
"""


def define_flags() -> None:
    from absl import flags

    flags.DEFINE_list("sizes", ["10000", "50000"], "Folder sizes (training photographs, at most 50,000).")
    flags.DEFINE_string(
        "before_commit",
        BEFORE_COMMIT,
        "The commit to measure as 'before' (a git worktree of it under --root); empty: the current code only.",
    )
    flags.DEFINE_list("modes", ["read", "train"], "What to measure: read (the input pipeline), train (one epoch).")
    flags.DEFINE_string("data_dir", None, "Holds cifar10_jpeg/ (default: $LIMIT_DATA_DIR).")
    from limit_tf import cli

    cli.define_shared_flags(
        root=str(HERE / "runs" / "folder_scale"),
        out=(str(HERE / "results" / "folder_scale"), "a path prefix (.json and .md added)."),
    )


def _checkout(root: Path, commit: str) -> Path:
    """A worktree of ``commit`` under ``root`` (made once)."""
    tree = root / f"code_{commit}"
    if not (tree / "limit_tf").is_dir():
        done = subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), commit], cwd=REPO, capture_output=True, text=True
        )
        if done.returncode:
            raise SystemExit(f"error: --before_commit={commit} cannot be checked out: {done.stderr.strip()}")
    return tree


def _measure(args: list[str], code: Path, log: Path) -> tuple[int, float, str]:
    """Runs ``python args`` with ``code`` first on the path; (exit status, peak RSS in MiB, output)."""
    env = {**os.environ, "PYTHONPATH": str(code), "LIMIT_TF_CACHE": "off"}  # every load is a first check
    with open(log, "w") as out:
        child = subprocess.Popen([sys.executable, *args], cwd=code, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, usage.ru_maxrss / 1024.0, log.read_text()


def _one(mode: str, version: str, code: Path, folder: Path, root: Path) -> dict:
    n = int(folder.name.split("_n")[-1])
    log = root / f"{mode}_{version}_n{n}.log"
    row = {"mode": mode, "version": version, "n": n}
    start = time.perf_counter()
    if mode == "read":
        status, peak, output = _measure(["-c", READ, str(folder / "train"), str(folder / "test")], code, log)
        found = [line for line in output.splitlines() if line.startswith("RESULT ")]
        if status or not found:
            raise SystemExit(f"error: the {version} read of {n} images failed (exit {status}); see {log}")
        row.update(json.loads(found[-1][len("RESULT ") :]))
    else:
        run = root / f"run_{version}_n{n}"
        if run.exists():
            subprocess.run(["rm", "-rf", str(run)], check=True)
        args = [
            "-m",
            "limit_tf.main",
            f"--dataset=folder:{folder / 'train'}",
            f"--test_data={folder / 'test'}",
            "--method=limit",
            "--epochs=1",
            f"--workdir={run}",
        ]
        status, peak, _ = _measure(args, code, log)
        if status:
            raise SystemExit(f"error: the {version} training run on {n} images failed (exit {status}); see {log}")
        results = json.loads((run / "results.json").read_text())
        row["train_images_per_s"] = (
            results["num_train_examples_used"] * results["epochs_run"] / results["train_wall_time_s"]
        )
    row["peak_rss_mib"] = peak
    row["command_s"] = time.perf_counter() - start
    print(json.dumps(row), flush=True)
    return row


def _projection(rows: list[dict], mode: str, version: str) -> dict | None:
    points = sorted((r["n"], r["peak_rss_mib"]) for r in rows if r["mode"] == mode and r["version"] == version)
    if len(points) < 2 or points[0][0] == points[-1][0]:
        return None
    (n1, m1), (n2, m2) = points[0], points[-1]
    per_image = (m2 - m1) / (n2 - n1)
    return {
        "mode": mode,
        "version": version,
        "ratio": m2 / m1,
        "sizes": [n1, n2],
        "kib_per_image": 1024 * per_image,
        f"peak_rss_mib_at_{PROJECT_TO}": m2 + per_image * (PROJECT_TO - n2),
    }


def main(argv) -> None:
    del argv
    import real_noise  # beside this script: the folder writer
    from absl import flags

    from limit_tf import workdir

    f = flags.FLAGS
    sizes = sorted({int(s) for s in f.sizes})
    if not sizes or sizes[0] < 1_000 or sizes[-1] > 50_000:
        raise SystemExit(f"error: --sizes={','.join(f.sizes)} is not allowed: each must be in [1000, 50000].")
    bad = sorted(set(f.modes) - {"read", "train"})
    if bad:
        raise SystemExit(f"error: --modes={bad[0]} is not allowed; allowed: read, train.")
    source = real_noise.cifar_source(f.data_dir)
    root = Path(f.root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    versions = {"after": REPO}
    if f.before_commit:
        versions = {"before": _checkout(root, f.before_commit), **versions}
    folders = {}
    for n in sizes:
        folders[n] = root / f"cifar_n{n}"
        print(f"writing or finding the folder of {n} photographs: {folders[n]}", flush=True)
        real_noise._write_clean(source, folders[n], n, 1_000)
    rows = []
    for mode in f.modes:
        for n in sizes:
            for version, code in versions.items():
                rows.append(_one(mode, version, code, folders[n], root))
    projections = [p for mode in f.modes for v in versions if (p := _projection(rows, mode, v))]
    lines = [
        "| measured | code | images | peak memory | load (check) | input pipeline | training epoch | command |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        load = f"{r['load_s']:.1f} s" if "load_s" in r else ""
        read = f"{r['read_images_per_s']:,.0f} img/s" if "read_images_per_s" in r else ""
        fit = f"{r['train_images_per_s']:,.0f} img/s" if "train_images_per_s" in r else ""
        lines.append(
            f"| {r['mode']} | {r['version']} | {r['n']:,} | {r['peak_rss_mib']:,.0f} MiB | {load} | {read} | {fit} | "
            f"{r['command_s']:.0f} s |"
        )
    if projections:
        lines += [
            "",
            f"| measured | code | peak ratio {sizes[-1]:,} / {sizes[0]:,} | KiB per image | projected peak at {PROJECT_TO:,} |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {p['mode']} | {p['version']} | {p['ratio']:.2f}x | {p['kib_per_image']:.2f} | "
            f"{p[f'peak_rss_mib_at_{PROJECT_TO}']:,.0f} MiB |"
            for p in projections
        ]
    report = {
        "sizes": sizes,
        "before_commit": f.before_commit or None,
        "rows": rows,
        "projections": projections,
        "cpus": os.cpu_count(),
    }
    workdir.write_report(f.out, report, "\n".join(lines))


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(REPO))
    from limit_tf import cli

    cli.run(main, define_flags)
