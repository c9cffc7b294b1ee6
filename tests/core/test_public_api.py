"""The public API: explicit ``__all__`` lists, one import path per name, lazy loading.

Each public namespace lists its names in ``__all__``; a name lives in exactly one of them
(its home, see docs/architecture.md), resolves to the object of its defining module, and
is imported only when first named.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import modjax

PACKAGE = Path(modjax.__file__).resolve().parent

#: every public namespace: the lazy packages, then the base modules that are their names' home
NAMESPACES = ("modjax", "modjax.flow", "modjax.data", "modjax.graph", "modjax.graph.models",
              "modjax.train", "modjax.io", "modjax.observe", "modjax.viz", "modjax.bridge",
              "modjax.errors", "modjax.context", "modjax.paths", "modjax.distributed")
#: the namespaces that load their names through a ``{name: module}`` table (PEP 562)
LAZY = ("modjax", "modjax.flow", "modjax.data", "modjax.graph", "modjax.graph.models",
        "modjax.train", "modjax.observe", "modjax.viz", "modjax.bridge")
#: module globals of a lazy namespace that are not public names
HELPERS = {"annotations", "TYPE_CHECKING", "lazy_namespace", "importlib", "Any"}
NEEDS = {"TorchModelWrapper": "torch", "ScikitModelWrapper": "sklearn"}


def _source(namespace: str) -> Path:
    rel = Path(*namespace.split(".")[1:])
    pkg = PACKAGE / rel / "__init__.py"
    return pkg if pkg.exists() else (PACKAGE / rel).with_suffix(".py")


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_every_name_in_all_resolves_to_its_defining_object(namespace):
    ns = importlib.import_module(namespace)
    assert ns.__all__, f"{namespace} has an empty __all__"
    assert len(set(ns.__all__)) == len(ns.__all__), f"{namespace}.__all__ repeats a name"
    for name in ns.__all__:
        if name in NEEDS:
            pytest.importorskip(NEEDS[name])
        value = getattr(ns, name)
        assert value is not None, f"{namespace}.{name}"
        if inspect.isclass(value) or inspect.isfunction(value):
            # the object is its defining module's: no wrapper, no copy
            home = sys.modules[value.__module__]
            assert getattr(home, value.__name__, None) is value, f"{namespace}.{name}"


def test_no_public_name_is_exported_by_two_namespaces():
    seen: dict[str, str] = {}
    clashes = []
    for namespace in NAMESPACES:
        for name in importlib.import_module(namespace).__all__:
            if name in seen:
                clashes.append(f"{name}: {seen[name]} and {namespace}")
            seen.setdefault(name, namespace)
    assert not clashes, clashes
    assert len(seen) > 200  # the whole public surface is covered


def test_the_flow_vocabulary_lives_in_modjax_flow_only():
    import modjax.flow
    import modjax.graph.flow

    assert {"FlowBuilder", "Graph", "Add", "Cat", "Mean", "SoftmaxRouter"} <= set(modjax.flow.__all__)
    assert modjax.graph.flow.__all__ == []
    for name in ("FlowBuilder", "Graph", "Mean"):
        assert name not in modjax.__all__ and name not in modjax.graph.__all__
    with pytest.raises(AttributeError, match="FlowBuilder"):
        modjax.FlowBuilder  # noqa: B018
    # the ModelGraph's merge node and the flow's Mean are different names in different homes
    assert modjax.MeanNode is not modjax.flow.Mean


@pytest.mark.parametrize("namespace", LAZY)
def test_dir_lists_the_public_names(namespace):
    ns = importlib.import_module(namespace)
    listed = set(dir(ns))
    assert set(ns.__all__) <= listed
    public = {n for n in listed if not n.startswith("_") and n not in HELPERS
              and (n in ns.__all__ or not inspect.ismodule(getattr(ns, n)))}
    assert public == set(ns.__all__)


@pytest.mark.parametrize("namespace", LAZY)
def test_table_all_and_static_imports_agree(namespace):
    ns = importlib.import_module(namespace)
    assert set(ns._WHERE) == set(ns.__all__)
    # the TYPE_CHECKING imports (what IDEs and type checkers see) name the same modules
    static = {}
    for node in ast.walk(ast.parse(_source(namespace).read_text())):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for imp in node.body:
                static.update({a.name: imp.module for a in imp.names})
    assert static == ns._WHERE


def test_no_star_imports_in_the_package():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
                offenders.append(str(path.relative_to(PACKAGE)))
    assert not offenders, offenders


def test_unknown_names_are_attribute_errors_naming_the_namespace():
    with pytest.raises(AttributeError, match=r"module 'modjax' has no attribute 'NoSuchThing'"):
        modjax.NoSuchThing  # noqa: B018
    data = importlib.import_module("modjax.data")
    with pytest.raises(AttributeError, match=r"'modjax.data' has no attribute 'FeatureSet'"):
        data.FeatureSet  # noqa: B018 - its home is the top level


LAZY_CODE = """
import sys
import modjax
before = sorted(m for m in sys.modules if m.startswith("modjax"))
fs = modjax.FeatureSet
from modjax.data.featureset import FeatureSet
assert fs is FeatureSet and vars(modjax)["FeatureSet"] is FeatureSet
assert "modjax.train" not in sys.modules and "modjax.data" in sys.modules
import modjax.data
assert modjax.io is sys.modules["modjax.io"]
print(before)
"""


def test_names_load_on_first_use():
    out = subprocess.run([sys.executable, "-c", LAZY_CODE], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['modjax', 'modjax._lazy']"


OUT_OF_CORE = """
import sys
from modjax import FeatureSet
assert "modjax.data.out_of_core" not in sys.modules
from modjax.data.out_of_core import from_arrow_ipc, from_parquet
assert FeatureSet.from_parquet is from_parquet and FeatureSet.from_arrow_ipc is from_arrow_ipc
print("ok")
"""


def test_out_of_core_constructors_are_there_before_their_module_loads():
    # they used to appear only once modjax.data's package import had loaded out_of_core
    out = subprocess.run([sys.executable, "-c", OUT_OF_CORE], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_the_registering_modules_list_is_complete():
    from modjax._lazy import REGISTERING_MODULES

    found = set()
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if "@register(" in path.read_text() and not name.startswith(("modjax.bridge.",
                                                                      "modjax.io.")):
            found.add(name)
    assert set(REGISTERING_MODULES) == found


BY_NAME = """
import modjax
from modjax.io import deserialize
mlp = deserialize({"class": "SequentialMLP", "config": {"output_shape": [1, 2], "n_layers": 1}})
print(type(mlp).__name__, mlp.output_shape)
"""


def test_a_config_without_its_module_finds_modjax_classes_after_a_bare_import():
    # import modjax loads no layer, so no class has registered yet when the config is read
    out = subprocess.run([sys.executable, "-c", BY_NAME], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "SequentialMLP (1, 2)"
