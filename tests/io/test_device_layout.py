"""Checkpoints restore onto a different device count (8 sharded <-> 1), in subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax

_COMMON = textwrap.dedent("""
    import sys, numpy as np, jax, jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from modjax.io.checkpoints import save_pytree, load_pytree
    path, mode = sys.argv[1], sys.argv[2]
    def values():
        return {"params": {"w": np.arange(64.0, dtype=np.float32).reshape(16, 4),
                           "b": np.linspace(0, 1, 4, dtype=np.float32)},
                "state": {"n": np.int32(3)}}
    n = jax.device_count()
    mesh = Mesh(np.array(jax.devices()), ("data",))
    def place(tree):
        shard = {"params": {"w": NamedSharding(mesh, P("data")), "b": NamedSharding(mesh, P())},
                 "state": {"n": NamedSharding(mesh, P())}}
        return jax.tree.map(lambda x, s: jax.device_put(x, s), tree, shard)
    if mode == "save":
        tree = place(values())
        assert len(tree["params"]["w"].sharding.device_set) == n
        save_pytree(path, tree, meta={"devices": n})
        print("saved", n)
    else:
        target = place(jax.tree.map(np.zeros_like, values()))
        out = load_pytree(path, target=target)
        for got, want, tgt in zip(jax.tree.leaves(out), jax.tree.leaves(values()),
                                  jax.tree.leaves(target)):
            assert got.sharding == tgt.sharding, (got.sharding, tgt.sharding)
            np.testing.assert_array_equal(np.asarray(got), want)
        plain = load_pytree(path)
        np.testing.assert_array_equal(plain["params"]["w"], values()["params"]["w"])
        print("restored", n, len(out["params"]["w"].sharding.device_set))
""")


def _run(path, mode, devices):
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    r = subprocess.run([sys.executable, "-c", _COMMON, str(path), mode], capture_output=True,
                       text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.split()


def _in_process(path, mode, capsys):
    # The test process itself has one CPU device: run the 1-device half here.
    assert jax.device_count() == 1
    argv = sys.argv
    sys.argv = ["device_layout", str(path), mode]
    try:
        exec(compile(_COMMON, "<device_layout>", "exec"), {"__name__": "device_layout"})
    finally:
        sys.argv = argv
    return capsys.readouterr().out.split()


def test_sharded_over_8_restores_on_1(tmp_path, capsys):
    assert _run(tmp_path / "c", "save", 8) == ["saved", "8"]
    assert _in_process(tmp_path / "c", "load", capsys) == ["restored", "1", "1"]


def test_single_device_restores_sharded_over_8(tmp_path, capsys):
    assert _in_process(tmp_path / "c", "save", capsys) == ["saved", "1"]
    assert _run(tmp_path / "c", "load", 8) == ["restored", "8", "8"]
