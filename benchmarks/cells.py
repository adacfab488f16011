"""The loop that the MNIST benchmarks share: every (noise rate, seed) cell, results saved after each."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from limit_tf import methods, workdir


def run_cells(
    base,
    one_cell: Callable,
    *,
    rates,
    seeds: int,
    root: str,
    out: str,
    to_markdown: Callable[[list[dict]], str],
    extra: dict | None = None,
) -> list[dict]:
    """Runs ``one_cell(config, cell_root)`` per noise rate and seed (seed = noise seed).

    After every cell, ``out``.json (the settings, ``extra``, the cells so far,
    the library versions) and ``out``.md (``to_markdown(cells)``) are
    rewritten atomically, so an interrupted benchmark keeps what it finished
    (and its runs resume from their work dirs).
    """
    cells = []
    for rate in (float(r) for r in rates):
        for seed in range(seeds):
            config = base.replace(noise_rate=rate, seed=seed, noise_seed=seed)
            config.replace(method=methods.LIMIT, workdir=str(Path(root) / "check")).validate()
            cells.append(one_cell(config, Path(root) / f"p{rate:g}_seed{seed}"))
            report = {"settings": base.to_dict(), **(extra or {}), "cells": cells}
            report["versions"] = workdir.library_versions()
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            workdir.write_text(Path(out + ".json"), json.dumps(report, indent=2) + "\n")
            workdir.write_text(Path(out + ".md"), to_markdown(cells))
    print(to_markdown(cells))
    print(f"written: {out}.json, {out}.md")
    return cells


def run_from_flags(
    base, one_cell: Callable, to_markdown: Callable[[list[dict]], str], extra: dict | None = None, flag_values=None
):
    """:func:`run_cells` with the benchmark's ``--noise_rates``, ``--seeds``, ``--root`` and ``--out``."""
    from absl import flags

    f = flag_values or flags.FLAGS
    return run_cells(
        base, one_cell, rates=f.noise_rates, seeds=f.seeds, root=f.root, out=f.out, to_markdown=to_markdown, extra=extra
    )
