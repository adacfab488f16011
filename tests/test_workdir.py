"""The work-directory format: atomic writes, tolerant reads, one-line errors."""

import json

import numpy as np
import pytest

from limit_tf import workdir


def test_atomic_path_leaves_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "results.json"
    workdir.write_json(path, {"a": 1})
    with pytest.raises(RuntimeError), workdir.atomic_path(path) as tmp:
        tmp.write_text('{"a": 2, "tor')
        raise RuntimeError("killed mid-write")
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]  # no temporary left behind


def test_json_and_npz_round_trip(tmp_path):
    run = workdir.RunDir(tmp_path)
    run.write_results({"x": np.float32(0.5), "v": np.arange(3), "p": tmp_path})
    assert run.results() == {"x": 0.5, "v": [0, 1, 2], "p": str(tmp_path)} and run.finished
    run.write_labels({"a": np.arange(4), "names": np.asarray(["x", "y"])})
    labels = run.labels()
    assert labels["a"].tolist() == [0, 1, 2, 3] and labels["names"].tolist() == ["x", "y"]


@pytest.mark.parametrize("name", ["config.json", "selection.json", "results.json"])
def test_a_corrupt_json_file_is_one_line_naming_it_and_what_to_do(tmp_path, name):
    (tmp_path / name).write_text('{"method": "li')
    run = workdir.RunDir(tmp_path)
    reader = {"config.json": run.config, "selection.json": run.selection, "results.json": run.results}[name]
    with pytest.raises(workdir.CorruptFileError) as error:
        reader()
    message = str(error.value)
    assert "\n" not in message and f"{tmp_path / name} is corrupt" in message and "delete" in message


def test_metrics_csv_drops_a_torn_last_row_and_keeps_the_last_row_per_epoch(tmp_path):
    run = workdir.RunDir(tmp_path)
    rows = [{"epoch": e, "loss": 1.0 / (e + 1), "val_accuracy": 0.1 * e} for e in range(4)]
    run.write_metrics(rows)
    assert run.metrics() == rows
    text = (tmp_path / "metrics.csv").read_text()
    (tmp_path / "metrics.csv").write_text(text + "1,0.25,0.9\n" + "4,0.2")  # epoch 1 redone, then a torn line
    got = run.metrics()
    assert [r["epoch"] for r in got] == [0, 1, 2, 3] and got[1]["val_accuracy"] == 0.9
    (tmp_path / "metrics.csv").write_text("")
    assert run.metrics() == []


def test_find_runs_lists_finished_runs_only(tmp_path):
    for name, finished in (("a/seed0", True), ("a/seed1", False), ("b", True)):
        run = workdir.RunDir(tmp_path / name)
        run.path.mkdir(parents=True)
        run.write_config({"method": "ce"})
        if finished:
            run.write_results({"test_accuracy": 0.5})
    (tmp_path / "b" / "workers" / "worker_1").mkdir(parents=True)
    (tmp_path / "b" / "workers" / "worker_1" / "results.json").write_text("{}")
    assert [r.path.relative_to(tmp_path).as_posix() for r in workdir.find_runs(tmp_path)] == ["a/seed0", "b"]
    assert workdir.find_runs(tmp_path / "missing") == []


def test_unusable_dir_problems(tmp_path):
    (tmp_path / "file").write_text("x")
    assert workdir.unusable_dir_problem(tmp_path / "file") == "is a file, not a directory"
    assert "which is a file" in workdir.unusable_dir_problem(tmp_path / "file" / "a" / "b")
    assert workdir.unusable_dir_problem(tmp_path / "new" / "run") is None
    assert workdir.unusable_dir_problem(tmp_path) is None


def test_versions_are_read_without_importing_tensorflow():
    import subprocess
    import sys

    from tests.conftest import REPO

    code = (
        "import json, sys\n"
        "from limit_tf import workdir\n"
        "versions = workdir.library_versions()\n"
        "print(json.dumps({'versions': versions, 'tf_loaded': 'tensorflow' in sys.modules}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert not out["tf_loaded"]
    versions = out["versions"]
    assert all(versions[k] for k in ("limit_tf", "python", "keras", "numpy", "tensorflow"))


def test_a_directory_that_no_run_wrote_is_refused_an_empty_or_locked_one_is_not(tmp_path):
    assert workdir.foreign_content_problem(tmp_path / "new") is None
    (tmp_path / "empty").mkdir()
    assert workdir.foreign_content_problem(tmp_path / "empty") is None
    mine = tmp_path / "mine"
    (mine / "checkpoints").mkdir(parents=True)
    (mine / "best.keras").write_text("the user's own model")
    problem = workdir.foreign_content_problem(mine)
    assert "best.keras, checkpoints/" in problem and "did not write" in problem
    # The other workers of a multi-worker run make workers/<task>/ as they start, maybe before the chief's config.json.
    (tmp_path / "multi" / workdir.WORKERS / "worker_1").mkdir(parents=True)
    assert workdir.foreign_content_problem(tmp_path / "multi") is None
    (tmp_path / "multi" / workdir.WORKERS / "mine.txt").write_text("x")
    assert "workers/" in workdir.foreign_content_problem(tmp_path / "multi")
    (mine / workdir.LOCK).write_text("")
    (mine / "best.keras").unlink()
    (mine / "checkpoints").rmdir()
    assert workdir.foreign_content_problem(mine) is None  # a run killed before it wrote anything
    run = workdir.RunDir(tmp_path / "run")
    run.path.mkdir()
    run.write_config({"method": "ce"})
    (run.path / "metrics.csv").write_text("epoch\n0\n")
    assert workdir.foreign_content_problem(run.path) is None


_HOLD = """
import sys, time
from limit_tf import workdir
with workdir.locked(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_one_process_at_a_time_and_a_dead_holder_leaves_no_stale_lock(tmp_path):
    import signal
    import subprocess
    import sys

    from tests.conftest import REPO

    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path / "run")], cwd=REPO, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"held"
        busy = rf"is in use by another process \(pid {holder.pid}\)"
        with pytest.raises(workdir.WorkdirBusyError, match=busy), workdir.locked(tmp_path / "run"):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with workdir.locked(tmp_path / "run"):  # the kernel released the dead process's lock
        pass


def test_a_run_that_fails_before_writing_leaves_no_directory(tmp_path):
    with pytest.raises(RuntimeError), workdir.locked(tmp_path / "run"):
        raise RuntimeError("bad data")
    assert not (tmp_path / "run").exists()
