"""The layer rule: modules import downward only (docs/architecture.md, "Layers").

Every ``import`` of a modjax module is read from the source (module level, inside
functions and under ``TYPE_CHECKING`` alike) and checked against the layer order below.
A module may import its own layer and any lower layer; layers of the same rank are
siblings and do not import each other. The few upward imports that exist are listed in
``UPWARD`` with their reason; each must stay inside a function (never at module level).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import modjax

PACKAGE = Path(modjax.__file__).resolve().parent

#: (module prefix, layer, rank), lowest first; a module's layer is its longest matching prefix
LAYERS = (
    ("modjax._lazy", "base", 0), ("modjax.errors", "base", 0), ("modjax.paths", "base", 0),
    ("modjax.logger", "base", 0), ("modjax.protocols", "base", 0), ("modjax.context", "base", 0),
    ("modjax.distributed", "base", 0), ("modjax.notebook", "base", 0),
    ("modjax.backend_note", "base", 0),
    ("modjax.io", "io", 1),
    ("modjax.data", "data", 2), ("modjax.observe", "observe", 2),
    ("modjax.graph.models", "models", 3),
    ("modjax.graph", "graph", 4), ("modjax.bridge", "bridge", 4),
    ("modjax.graph.flow", "flow", 5),
    ("modjax.train", "train", 6),
    ("modjax.viz", "viz", 7),
    ("modjax.flow", "api", 8), ("modjax", "api", 8),
)

#: (importing module, imported module): the upward imports there are, each function-local
UPWARD = {
    # as_model hands torch modules and scikit-learn estimators to the bridge that wraps them
    ("modjax.graph.models.protocol", "modjax.bridge.dispatch"),
    # ModelGraph.to_mermaid() / summary() and Graph.dot() / svg() render through viz
    ("modjax.graph.model_graph", "modjax.viz.mermaid"),
    ("modjax.graph.model_graph", "modjax.viz.summary"),
    ("modjax.graph.flow.shell", "modjax.viz.dot"),
    # ExperimentPhase.to_mermaid() renders through viz
    ("modjax.train.phases", "modjax.viz.phase"),
    # the notebook display mixins (base, so every layer can use them) render through viz
    ("modjax.notebook", "modjax.viz.notebook"),
}


def layer_of(module: str) -> tuple[str, int]:
    best = max((p for p in LAYERS if module == p[0] or module.startswith(p[0] + ".")),
               key=lambda p: len(p[0]))
    return best[1], best[2]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[str, int, bool]]:
    """``(imported modjax module, line, function-local)`` for every import in a file."""
    tree = ast.parse(path.read_text())
    found = []

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, inner) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                # ``from modjax.data import io`` imports the submodule modjax.data.io
                found.extend((f"{child.module}.{a.name}" if _is_module(child.module, a.name)
                              else child.module, child.lineno, inner) for a in child.names)
            visit(child, inner)

    visit(tree, False)
    return [f for f in found if f[0] == "modjax" or f[0].startswith("modjax.")]


def _is_module(package: str, name: str) -> bool:
    base = PACKAGE.parent.joinpath(*package.split("."))
    return (base / f"{name}.py").exists() or (base / name / "__init__.py").exists()


def violations(path: Path) -> list[str]:
    return violations_of(module_name(path), imports_of(path))


def violations_of(me: str, imports: list[tuple[str, int, bool]]) -> list[str]:
    my_layer, my_rank = layer_of(me)
    out = []
    for target, line, local in imports:
        layer, rank = layer_of(target)
        if layer == my_layer or rank < my_rank:
            continue
        if (me, target) in UPWARD and local:
            continue
        kind = "function-local" if local else "module-level"
        out.append(f"{me}:{line} ({my_layer}, rank {my_rank}) imports {target} ({layer}, "
                   f"rank {rank}) at {kind}")
    return out


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    assert len(MODULES) > 100
    for path in MODULES:
        layer_of(module_name(path))  # max() of no match raises


@pytest.mark.parametrize("layer", sorted({p[1] for p in LAYERS}))
def test_layers_import_downward_only(layer):
    bad = [v for p in MODULES if layer_of(module_name(p))[0] == layer for v in violations(p)]
    assert not bad, "\n".join(bad)


def test_io_is_a_store_that_imports_no_object_layer():
    # io saves pytrees and JSON: no data/graph/train/observe classes, at any level
    bad = [f"{module_name(p)}:{line} imports {t}" for p in MODULES
           if layer_of(module_name(p))[0] == "io" for t, line, _ in imports_of(p)
           if layer_of(t)[0] not in ("io", "base")]
    assert not bad, "\n".join(bad)


def test_the_listed_upward_imports_exist():
    # a stale exception would let a new upward import through unnoticed
    seen = {(module_name(p), t) for p in MODULES for t, _, _ in imports_of(p)}
    assert UPWARD <= seen, UPWARD - seen


def test_the_checker_catches_upward_and_sibling_imports(tmp_path):
    src = tmp_path / "probe.py"
    src.write_text("from modjax.errors import ConfigError\n"
                   "from modjax.observe import trends\n"
                   "def f():\n    from modjax.train.step import make_train_step\n")
    found = imports_of(src)
    assert found == [("modjax.errors", 1, False), ("modjax.observe.trends", 2, False),
                     ("modjax.train.step", 4, True)]
    bad = violations_of("modjax.data.probe", found)
    assert bad == [
        "modjax.data.probe:2 (data, rank 2) imports modjax.observe.trends (observe, rank 2) "
        "at module-level",
        "modjax.data.probe:4 (data, rank 2) imports modjax.train.step (train, rank 6) "
        "at function-local"]
    # a listed exception is allowed inside a function only
    assert violations_of("modjax.train.phases", [("modjax.viz.phase", 3, True)]) == []
    assert violations_of("modjax.train.phases", [("modjax.viz.phase", 3, False)])
