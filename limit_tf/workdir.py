"""The work-directory format: what a run writes, under which names, and how.

One run's directory holds::

    config.json          the config (a rerun with a different experiment is refused)
    labels.npz           noisy and clean labels, corruption masks, source indices
    metrics.csv          per-epoch metrics (one row per finished epoch)
    selection.json       the model-selection state after the last finished epoch
    tensorboard/         TensorBoard logs
    data.json            a fingerprint of your own data's files (a rerun on changed files is refused)
    .lock                held by the process that trains in it (a second one is refused)
    checkpoints/         training state while the run is unfinished (removed at the end)
    best.weights.h5      weights of the best validation epoch      } written when the
    best.keras           the best model, for keras.models.load_model } run finishes,
    results.json         test accuracy, best epoch, versions, ...  } results.json last

Every file is written atomically (to a temporary name, flushed, then renamed),
so a run killed at any instant leaves either the old or the new version of a
file, never a torn one. Readers name the file and what to do when a file is
corrupt anyway (:class:`CorruptFileError`). Report, detection, the tuner and
the benchmarks read run directories through this module. No TensorFlow here.

A run only ever deletes or replaces what it wrote itself: a directory that is
neither empty nor a run's work dir is refused (:func:`foreign_content_problem`),
and one process at a time trains in a work dir (:func:`locked`).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import importlib.metadata
import io
import json
import math
import os
import platform
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from limit_tf import __version__, methods

CONFIG = "config.json"
LABELS = "labels.npz"
METRICS = "metrics.csv"
SELECTION = "selection.json"
RESULTS = "results.json"
BEST_WEIGHTS = "best.weights.h5"
BEST_MODEL = "best.keras"
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"
WORKERS = "workers"
DATA_FINGERPRINT = "data.json"
LOCK = ".lock"


class CorruptFileError(ValueError):
    """A file of a work dir cannot be read; the message names it and what to do."""


class WorkdirBusyError(ValueError):
    """Another process holds the work dir's lock; the message names the directory and that process."""


# --------------------------------------------------------------------------
# Atomic writes.


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; renames it to ``path`` on success.

    For writers that take a file name (Keras' ``save_weights``, ``save``):
    the temporary name keeps the suffix they require (``tmp-best.weights.h5``).
    On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    tmp = path.with_name(f"tmp-{path.name}")
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: str | os.PathLike, value: Any) -> None:
    write_text(path, json.dumps(value, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_report(prefix: str, report: Mapping[str, Any], markdown: str) -> None:
    """A benchmark's results: ``<prefix>.json`` (``report`` and the library versions) and ``<prefix>.md``
    (``markdown``, also printed with where both went)."""
    Path(prefix).parent.mkdir(parents=True, exist_ok=True)
    write_text(Path(prefix + ".json"), json.dumps({**report, "versions": library_versions()}, indent=2) + "\n")
    write_text(Path(prefix + ".md"), markdown.rstrip("\n") + "\n")
    print(markdown.rstrip("\n"))
    print(f"written: {prefix}.json, {prefix}.md", flush=True)


def write_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_bytes(path, buffer.getvalue())


def _fsync(path: Path) -> None:
    if path.is_file():
        with open(path, "rb") as f:
            os.fsync(f.fileno())


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value)}")


# --------------------------------------------------------------------------
# Reading.


def read_json(path: str | os.PathLike, *, remedy: str) -> Any:
    """Parses a JSON file; a missing file gives None, a corrupt one a one-line error."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        reason = e.msg if isinstance(e, json.JSONDecodeError) else type(e).__name__
        raise CorruptFileError(f"{path} is corrupt ({reason}); {remedy}") from None


def _parse_float(text: str) -> float:
    return float(text) if text not in ("", None) else math.nan


def read_metrics_csv(path: str | os.PathLike) -> list[dict[str, float]]:
    """Per-epoch rows as floats, one per epoch (the last row of an epoch wins).

    A torn last line (a kill in the middle of a write by an older version, or
    a truncated copy) is dropped, not fatal: the epochs it lacks are redone.
    """
    path = Path(path)
    if not path.is_file():
        return []
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise CorruptFileError(f"{path} is unreadable ({type(e).__name__}); delete it to start the run over.") from None
    rows: dict[int, dict[str, float]] = {}
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header or "epoch" not in header:
        return []
    for cells in reader:
        if len(cells) != len(header):
            continue
        try:
            row = {key: _parse_float(value) for key, value in zip(header, cells, strict=True)}
        except ValueError:
            continue
        if math.isnan(row["epoch"]):
            continue
        rows[int(row["epoch"])] = row
    return [rows[e] for e in sorted(rows)]


def write_metrics_csv(path: str | os.PathLike, rows: list[Mapping[str, float]]) -> None:
    """Writes per-epoch rows (``epoch`` first, then every key in order of appearance)."""
    keys = ["epoch"]
    for row in rows:
        keys += [k for k in row if k not in keys]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(keys)
    for row in rows:
        writer.writerow(["" if row.get(k) is None else _csv_value(row.get(k)) for k in keys])
    write_text(path, buffer.getvalue())


def _csv_value(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return repr(float(value))


class RunDir:
    """One run's work directory (see the module docstring for its files)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    # Config -----------------------------------------------------------------

    def data_fingerprint(self) -> dict | None:
        return read_json(self.file(DATA_FINGERPRINT), remedy=f"delete it to train {self.path} on the data as it is")

    def write_data_fingerprint(self, fingerprint: Mapping[str, Any]) -> None:
        write_json(self.file(DATA_FINGERPRINT), dict(fingerprint))

    def config(self) -> dict | None:
        """The stored config as a dict (None before the run wrote it)."""
        return read_json(self.file(CONFIG), remedy=f"delete {self.path} to start this run over")

    def write_config(self, values: Mapping[str, Any]) -> None:
        write_json(self.file(CONFIG), dict(values))

    # Labels ---------------------------------------------------------------

    def write_labels(self, arrays: Mapping[str, np.ndarray]) -> None:
        write_npz(self.file(LABELS), arrays)

    def labels(self) -> dict[str, np.ndarray]:
        path = self.file(LABELS)
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: {self.path} is not a run directory.")
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError) as e:
            raise CorruptFileError(f"{path} is corrupt ({e}); delete it and rerun the run's command.") from None

    # Metrics and selection -------------------------------------------------

    def metrics(self) -> list[dict[str, float]]:
        return read_metrics_csv(self.file(METRICS))

    def write_metrics(self, rows: list[Mapping[str, float]]) -> None:
        write_metrics_csv(self.file(METRICS), rows)

    def selection(self) -> dict | None:
        return read_json(self.file(SELECTION), remedy="delete it; the run's checkpoint holds the same state")

    def write_selection(self, state: Mapping[str, Any]) -> None:
        write_json(self.file(SELECTION), dict(state))

    # Results ----------------------------------------------------------------

    def results(self) -> dict | None:
        """The results of a finished run, or None."""
        return read_json(
            self.file(RESULTS),
            remedy=f"delete it and rerun the run's command (the run is then evaluated again from {BEST_WEIGHTS})",
        )

    def write_results(self, results: Mapping[str, Any]) -> None:
        write_json(self.file(RESULTS), dict(results))

    @property
    def finished(self) -> bool:
        return self.file(RESULTS).is_file()

    @property
    def checkpoint_dir(self) -> Path:
        return self.file(CHECKPOINTS)

    def worker_dir(self, task: str) -> Path:
        """Where a non-chief worker of a multi-worker run keeps its own state."""
        return self.file(WORKERS) / task


def find_runs(root: str | os.PathLike) -> list[RunDir]:
    """Finished runs under ``root`` (itself included), sorted by path."""
    root = Path(root)
    if not root.is_dir():
        return []
    return [RunDir(p.parent) for p in sorted(root.rglob(RESULTS)) if WORKERS not in p.parts]


# --------------------------------------------------------------------------
# Checks made before anything is written.


def unusable_dir_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be (or become) a writable directory, or None."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        return "is a file, not a directory"
    parent = path
    while not parent.exists():
        if parent.parent == parent:
            break
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        return f"lies inside {str(parent)!r}, which is a file"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot be written: {str(parent)!r} is read-only" if parent != path else "is read-only"
    return None


def foreign_content_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` may not become a run's work dir because it holds files that no run wrote, or None.

    An empty directory, one holding only a lock (a run killed before it wrote
    anything), and a run's work dir (it has ``config.json``) are fine.
    """
    path = Path(path)
    if not path.is_dir() or path.joinpath(CONFIG).is_file():
        return None
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir() if p.name != LOCK and not _workers(p))
    if not entries:
        return None
    shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
    return f"holds files that limit-tf did not write ({shown}) and would overwrite: give a new or empty directory"


def _workers(path: Path) -> bool:
    """Whether ``path`` is the ``workers/`` folder of a multi-worker run (one folder per task: ``worker_1``, ...).

    The other workers create theirs as they start, possibly before the chief
    has written ``config.json``.
    """
    import re

    return (
        path.name == WORKERS
        and path.is_dir()
        and all(t.is_dir() and re.fullmatch(r"(worker|chief)_\d+", t.name) for t in path.iterdir())
    )


@contextlib.contextmanager
def locked(path: str | os.PathLike) -> Iterator[None]:
    """Holds ``<path>/.lock`` while the block runs (creating ``path``); one process at a time.

    The lock is the kernel's (``flock``): it is released when the process ends
    in any way, even by SIGKILL, so a lock file left behind by a dead process
    is simply taken again.

    Raises:
      WorkdirBusyError: another live process holds it.
    """
    import fcntl

    path = Path(path)
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    failed = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise WorkdirBusyError(
                f"--workdir={str(path)!r} is in use by another process (pid {holder}); wait for it to end, "
                "or use another work dir."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield
        except BaseException:
            failed = True
            raise
    finally:
        os.close(fd)  # releases the lock
        if failed and created and [p.name for p in path.iterdir()] == [LOCK]:
            # Nothing was written: leave no trace of a run that never started.
            with contextlib.suppress(OSError):
                (path / LOCK).unlink()
                path.rmdir()


def init_source_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a finished CE run to start from (``--init_from``), or None."""
    run = RunDir(path)
    if not run.path.is_dir():
        return "is not a directory: give the work dir of a finished CE run."
    if not run.file(BEST_WEIGHTS).is_file():
        return f"holds no trained model ({BEST_WEIGHTS} is missing): finish that run first."
    try:
        config = run.config() or {}
    except CorruptFileError as e:
        return f"cannot be used: {e}"
    method = config.get("method", methods.CE)
    if method != methods.CE:
        return f"is a {method!r} run: FW, DMI and LIMIT '+init' start from a CE run."
    return None


# --------------------------------------------------------------------------
# Versions recorded with results.


def _version(*distributions: str) -> str | None:
    for name in distributions:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return importlib.metadata.version(name)
    return None


def library_versions() -> dict[str, str | None]:
    """Versions of Python and the libraries a result depends on (read without importing them)."""
    tf = sys.modules.get("tensorflow")
    return {
        "limit_tf": __version__,
        "python": platform.python_version(),
        "tensorflow": getattr(tf, "__version__", None) or _version("tensorflow", "tensorflow-cpu"),
        "keras": _version("keras"),
        "numpy": np.__version__,
        "tensorflow_datasets": _version("tensorflow-datasets"),
    }
