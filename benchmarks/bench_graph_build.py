"""Build and compile cost of a 200-node ModelGraph (chains and merges of small MLPs).

Targets (issue 3): build < 5 s, jitted apply compiles < 30 s on a 2-core CPU box.

Run: ``python benchmarks/bench_graph_build.py``
"""

from __future__ import annotations

import time

import jax
import numpy as np

from modjax import ConcatNode, FeatureSet, ModelGraph, ModelNode, SequentialMLP
from modjax.context import ExperimentContext


def make_graph(fs_ref):
    """50 chains of 3 MLPs, paired by 25 ConcatNodes, 24 of them followed by an MLP, all
    joined by a final ConcatNode: 150 + 25 + 24 + 1 = 200 nodes."""
    nodes, chain_tails = [], []
    for c in range(50):
        up = fs_ref
        for d in range(3):
            n = ModelNode(f"c{c}_m{d}", SequentialMLP(output_shape=(1, 8), n_layers=2,
                                                      hidden_dim=16), up)
            nodes.append(n)
            up = n
        chain_tails.append(up)
    joins = []
    for p in range(25):
        cat = ConcatNode(f"cat{p}", chain_tails[2 * p: 2 * p + 2], concat_axis=-1)
        nodes.append(cat)
        if p < 24:
            post = ModelNode(f"post{p}", SequentialMLP(output_shape=(1, 8), n_layers=1), cat)
            nodes.append(post)
            joins.append(post)
        else:
            joins.append(cat)
    nodes.append(ConcatNode("out", joins, concat_axis=-1))
    return nodes


def main() -> None:
    # calibration: what one tiny XLA compile costs on this machine right now (compile
    # time dominates build; a loaded 2-core box can be several times slower than idle)
    t0 = time.perf_counter()
    jax.jit(lambda v: v * 2 + 1).lower(np.ones((3, 5), np.float32)).compile()
    t_tiny = time.perf_counter() - t0
    with ExperimentContext(registration_policy="overwrite").activate():
        rng = np.random.default_rng(0)
        fs = FeatureSet.from_dict("bench", {"x": rng.standard_normal((256, 16)).astype(
            np.float32), "y": rng.standard_normal((256, 1)).astype(np.float32)}, "x", "y")
        ref = fs.reference()
        x = np.asarray(fs.get_features(), np.float32)

        t0 = time.perf_counter()
        nodes = make_graph(ref)
        graph = ModelGraph(nodes)
        t_construct = time.perf_counter() - t0
        t0 = time.perf_counter()
        graph.build(key=jax.random.key(0))
        t_build = time.perf_counter() - t0

        fn = jax.jit(lambda v, xs: graph.apply(v, xs)[0]["out"])
        t0 = time.perf_counter()
        compiled = fn.lower(graph.variables, {"bench": x}).compile()
        t_compile = time.perf_counter() - t0
        compiled(graph.variables, {"bench": x}).block_until_ready()
        t0 = time.perf_counter()
        for _ in range(20):
            y = compiled(graph.variables, {"bench": x})
        y.block_until_ready()
        t_run = (time.perf_counter() - t0) / 20

        n_params = sum(a.size for a in jax.tree.leaves(graph.variables["params"]))
        print(f"nodes: {len(graph.nodes)}  params: {n_params:,}  output: {tuple(y.shape)}")
        print(f"construct + validate: {t_construct:.3f} s")
        print(f"build (shape inference + init): {t_build:.3f} s   target < 5 s   "
              f"{'OK' if t_build < 5 else 'SLOW'}")
        print(f"jit compile of apply: {t_compile:.3f} s   target < 30 s   "
              f"{'OK' if t_compile < 30 else 'SLOW'}")
        print(f"compiled apply, batch 256: {t_run * 1e3:.3f} ms")
        print(f"calibration: one tiny jit compile takes {t_tiny:.3f} s here; build = "
              f"{t_build / t_tiny:.1f} tiny compiles, apply compile = "
              f"{t_compile / t_tiny:.1f} tiny compiles")


if __name__ == "__main__":
    main()
