"""The package's import graph: no cycles, and the foundations import nothing above them.

Every ``import`` of a ``limit_tf`` module counts, at module level or inside
a function (a lazy import is still a dependency).
"""

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "limit_tf"
# Modules that must not depend on the training stack (no TensorFlow at import, no models):
# what they may import from the package.
FOUNDATIONS = {
    "limit_tf.workdir": {"limit_tf.methods", "limit_tf.paper"},  # --init_from must name a CE run
    "limit_tf.methods": {"limit_tf.paper"},
    "limit_tf.paper": set(),
    "limit_tf.detection": set(),
    "limit_tf.noise": set(),
    "limit_tf.config": {"limit_tf.methods", "limit_tf.data", "limit_tf.paper", "limit_tf.noise"},  # reads no file
    "limit_tf.paths": {
        "limit_tf.config",
        "limit_tf.workdir",
        "limit_tf.methods",
        "limit_tf.data",
        "limit_tf.paper",
        "limit_tf.noise",
    },
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules that ``name`` imports (``from limit_tf import x`` counts ``limit_tf.x``)."""
    out = set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and target != "limit_tf":
                out.add(target)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _under(module: str, allowed: set[str]) -> bool:
    return any(module == a or module.startswith(a + ".") for a in allowed)


def test_the_graph_sees_the_imports_it_should():
    graph = _graph()
    assert "limit_tf.runs" in graph["limit_tf.train"]
    assert {"limit_tf.detection", "limit_tf.builders"} <= graph["limit_tf.runs"]
    assert "limit_tf.runs" in graph["limit_tf.detection.__main__"]


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for child in sorted(graph.get(node, ())):
            if state.get(child) == 1:
                cycle = stack[stack.index(child) :] + [child]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if child not in state:
                visit(child)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


@pytest.mark.parametrize("module", sorted(FOUNDATIONS))
def test_foundations_import_nothing_above_them(module):
    graph = _graph()
    above = {m for m in graph[module] if not _under(m, FOUNDATIONS[module] | {module})}
    assert not above, f"{module} imports {sorted(above)}"
