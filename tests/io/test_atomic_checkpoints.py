"""Atomic artifacts, Orbax pytree checkpoints, manifests and their error messages."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from modjax.errors import CheckpointError, ConfigError
from modjax.io import atomic
from modjax.io.checkpoints import (
    CHECKPOINT_FORMAT_VERSION,
    checkpoint_kind,
    checkpoint_version,
    load_pytree,
    open_artifact,
    save_pytree,
    write_artifact,
)
from modjax.io.pytree_store import describe_tree, structural_hash


def _tree():
    return {
        "params": {"enc": {"w": jnp.arange(12.0).reshape(3, 4), "b": jnp.zeros((4,), jnp.bfloat16)},
                   "relu": {}},
        "state": {"enc": {"count": jnp.asarray(3, jnp.int32)}, "relu": {}},
        "empty": np.zeros((0, 5), np.float32),
        "misc": [1, 2.5, True, None, (np.int64(7),), "phase-a"],
    }


def test_pytree_roundtrip_is_bit_exact_and_keeps_structure(tmp_path):
    tree = _tree()
    save_pytree(tmp_path / "c", tree, meta={"epoch": 2})
    out = load_pytree(tmp_path / "c")
    assert out["params"]["relu"] == {} and out["state"]["relu"] == {}
    assert out["misc"][:4] == [1, 2.5, True, None] and out["misc"][5] == "phase-a" and isinstance(out["misc"][4], tuple)
    assert out["empty"].shape == (0, 5) and out["empty"].dtype == np.float32
    assert out["params"]["enc"]["b"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(out["params"]["enc"]["w"], np.arange(12.0).reshape(3, 4))
    assert int(out["state"]["enc"]["count"]) == 3
    art = open_artifact(tmp_path / "c")
    assert art.meta == {"epoch": 2}
    assert art.manifest["checkpoint_version"] == CHECKPOINT_FORMAT_VERSION
    assert checkpoint_version(tmp_path / "c") == CHECKPOINT_FORMAT_VERSION
    assert checkpoint_kind(tmp_path / "c") == "pytree"


def test_restore_onto_target_reproduces_optax_state_and_prng_keys(tmp_path):
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    opt = optax.adam(1e-2)
    state = opt.init(params)
    g = jax.tree.map(jnp.ones_like, params)
    _, state = opt.update(g, state, params)
    tree = {"opt": state, "key": jax.random.key(3), "raw_key": jax.random.PRNGKey(5)}
    save_pytree(tmp_path / "o", tree)
    out = load_pytree(tmp_path / "o", target=tree)
    assert type(out["opt"][0]) is type(state[0])
    chex.assert_trees_all_equal(out["opt"], state)
    np.testing.assert_array_equal(jax.random.key_data(out["key"]), jax.random.key_data(tree["key"]))
    chex.assert_trees_all_equal(out["raw_key"], tree["raw_key"])
    # Without a target, namedtuples of already-imported modules (optax) keep their type...
    plain = load_pytree(tmp_path / "o")
    assert type(plain["opt"][0]) is type(state[0])
    np.testing.assert_array_equal(plain["opt"][0].mu["w"], np.asarray(state[0].mu["w"]))


def test_namedtuple_of_unimported_module_comes_back_as_dict(tmp_path):
    from modjax.io.checkpoints import open_artifact as _open
    Pair = collections.namedtuple("Pair", ["a", "b"])
    Pair.__module__ = "not_imported_anywhere_mod"
    save_pytree(tmp_path / "p", {"x": Pair(np.ones(1), np.zeros(1))})
    spec = _open(tmp_path / "p").spec("tree")
    assert spec["tree"]["c"]["x"]["module"] == "not_imported_anywhere_mod"
    out = load_pytree(tmp_path / "p")
    assert out["x"]["a"].tolist() == [1.0] and "not_imported_anywhere_mod" not in sys.modules


def test_structural_hash_depends_on_names_shapes_dtypes_only():
    a, _ = describe_tree({"x": {"w": np.zeros((2, 3))}})
    b, _ = describe_tree({"x": {"w": np.ones((2, 3))}})
    c, _ = describe_tree({"x": {"w": np.zeros((3, 3))}})
    d, _ = describe_tree({"y": {"w": np.zeros((2, 3))}})
    assert a["hash"] == b["hash"] == structural_hash(b["leaves"])
    assert len({a["hash"], c["hash"], d["hash"]}) == 3


def test_target_mismatch_names_the_leaf(tmp_path):
    save_pytree(tmp_path / "c", {"enc": {"w": np.zeros((2, 3), np.float32)}})
    with pytest.raises(CheckpointError, match=r"enc\.w.*float32\(2, 3\).*float32\(3, 3\)"):
        load_pytree(tmp_path / "c", target={"enc": {"w": np.zeros((3, 3), np.float32)}})
    with pytest.raises(CheckpointError, match=r"missing in checkpoint \['enc\.v'\]"):
        load_pytree(tmp_path / "c", target={"enc": {"v": np.zeros((2, 3), np.float32)}})


def test_save_onto_existing_path_needs_overwrite(tmp_path):
    p = save_pytree(tmp_path / "c", {"w": np.ones(2)})
    with pytest.raises(FileExistsError, match=r"c' already exists; pass overwrite=True"):
        save_pytree(p, {"w": np.zeros(2)})
    np.testing.assert_array_equal(load_pytree(p)["w"], np.ones(2))
    save_pytree(p, {"w": np.zeros(2)}, overwrite=True)
    np.testing.assert_array_equal(load_pytree(p)["w"], np.zeros(2))
    gens = [c for c in p.iterdir() if c.name.startswith("gen-")]
    assert len(gens) == 1  # old generation removed after publishing


def test_overwrite_refuses_foreign_directory(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(CheckpointError, match=r"refusing to overwrite .*mine.*not a modjax artifact"):
        save_pytree(foreign, {"w": np.ones(1)}, overwrite=True)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_failed_save_leaves_previous_artifact(tmp_path):
    p = save_pytree(tmp_path / "c", {"w": np.ones(3)})
    with pytest.raises(CheckpointError, match=r"leaf 'bad' of type object"):
        save_pytree(p, {"w": np.zeros(3), "bad": object()}, overwrite=True)
    np.testing.assert_array_equal(load_pytree(p)["w"], np.ones(3))
    assert [c.name for c in p.iterdir() if c.name.startswith("gen-")].__len__() == 1
    # A failing first save leaves nothing behind that looks like an artifact.
    with pytest.raises(ConfigError, match=r"meta of .*new.* JSON"):
        save_pytree(tmp_path / "new", {"w": np.ones(1)}, meta={"arr": np.ones(1)})
    assert not (tmp_path / "new").exists()
    assert not [c for c in tmp_path.iterdir() if c.name.startswith(".new.tmp")]


def test_missing_path_and_non_artifact_errors(tmp_path):
    with pytest.raises(CheckpointError, match=r"no modjax artifact at .*nope.*does not exist"):
        load_pytree(tmp_path / "nope")
    (tmp_path / "plain").mkdir()
    with pytest.raises(CheckpointError, match=r"plain.*is not a modjax artifact"):
        load_pytree(tmp_path / "plain")


def test_truncated_checkpoint_is_reported_by_file(tmp_path):
    p = save_pytree(tmp_path / "c", {"w": np.arange(1000.0)})
    gen = atomic.resolve_artifact(p)
    data_files = sorted((f for f in gen.rglob("*") if f.is_file() and f.stat().st_size > 100
                         and f.name != "manifest.json"), key=lambda f: -f.stat().st_size)
    victim = data_files[0]
    victim.write_bytes(victim.read_bytes()[:-40])
    rel = str(victim.relative_to(gen))
    with pytest.raises(CheckpointError, match=rf"truncated or corrupt: file '{rel}'"):
        load_pytree(p)
    victim.unlink()
    with pytest.raises(CheckpointError, match=rf"truncated: file '{rel}' is missing"):
        load_pytree(p)


def test_manifest_missing_and_pointer_to_missing_generation(tmp_path):
    p = save_pytree(tmp_path / "c", {"w": np.ones(2)})
    gen = atomic.resolve_artifact(p)
    (gen / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match=r"incomplete: .*manifest.json.* is missing"):
        load_pytree(p)


def test_future_versions_are_errors(tmp_path):
    p = save_pytree(tmp_path / "c", {"w": np.ones(2)})
    gen = atomic.resolve_artifact(p)
    m = json.loads((gen / "manifest.json").read_text())
    m["checkpoint_version"] = CHECKPOINT_FORMAT_VERSION + 1
    (gen / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CheckpointError, match=r"checkpoint format version 2; .*upgrade modjax"):
        load_pytree(p)
    ptr = json.loads((p / atomic.POINTER_FILE).read_text())
    ptr["format_version"] = 99
    (p / atomic.POINTER_FILE).write_text(json.dumps(ptr))
    with pytest.raises(CheckpointError, match=r"artifact format version 99"):
        load_pytree(p)


def test_wrong_kind_is_named(tmp_path):
    p = write_artifact(tmp_path / "g", "graph_checkpoint", items={"variables": {"w": np.ones(1)}})
    with pytest.raises(CheckpointError, match=r"holds a 'graph_checkpoint' artifact, expected 'pytree'"):
        load_pytree(p)


_WRITER = textwrap.dedent("""
    import sys, numpy as np
    from modjax.io.checkpoints import save_pytree
    path = sys.argv[1]
    n = 4_000_000
    save_pytree(path, {"w": np.full((n,), 1.0, np.float32), "v": np.full((n,), 1.0, np.float32)},
                meta={"version": 1}, overwrite=True)
    print("v1", flush=True)
    k = 2
    while True:
        save_pytree(path, {"w": np.full((n,), float(k), np.float32),
                           "v": np.full((n,), float(k), np.float32)},
                    meta={"version": k}, overwrite=True)
        k += 1
""")


def _kill_during_an_overwrite(path):
    """Start the writer, SIGKILL it while a second overwrite's generation is unpublished;
    returns the generation directories left behind."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    kills = 0
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE,
                            env=env)
    try:
        assert proc.stdout.readline().strip() == b"v1"
        current = json.loads((path / atomic.POINTER_FILE).read_text())["current"]
        deadline = time.time() + 60
        # Kill while a new generation is being written (exists but is not published).
        while time.time() < deadline:
            gens = [c.name for c in path.iterdir() if c.name.startswith("gen-")]
            pointer = json.loads((path / atomic.POINTER_FILE).read_text())["current"]
            if any(g != pointer for g in gens) and pointer != current:
                proc.send_signal(signal.SIGKILL)
                kills += 1
                break
            time.sleep(0.002)
    finally:
        proc.kill()
        proc.wait()
    assert kills == 1, "the writer never got into a second overwrite"
    return [c.name for c in path.iterdir() if c.name.startswith("gen-")]


def test_save_killed_half_way_leaves_a_loadable_previous_checkpoint(tmp_path):
    # on a loaded machine the writer can publish between our look and the kill; try again
    # until the kill lands inside an unpublished generation
    for attempt in range(5):
        path = tmp_path / f"ckpt{attempt}"
        unpublished = _kill_during_an_overwrite(path)
        if len(unpublished) == 2:
            break
    assert len(unpublished) == 2  # the published generation and the half-written one
    art = open_artifact(path, kind="pytree")
    version = art.meta["version"]
    assert version >= 2
    out = art.restore("tree")
    np.testing.assert_array_equal(out["w"], np.full((4_000_000,), float(version), np.float32))
    np.testing.assert_array_equal(out["v"], out["w"])
    # The next save cleans up the killed generation.
    save_pytree(path, {"w": np.ones(1)}, overwrite=True)
    assert len([c for c in path.iterdir() if c.name.startswith("gen-")]) == 1


def test_first_save_killed_leaves_nothing_loadable(tmp_path):
    script = textwrap.dedent("""
        import sys, os, numpy as np
        from modjax.io import atomic
        from modjax.io.pytree_store import save_tree
        with atomic.atomic_artifact(sys.argv[1], "pytree") as gen:
            save_tree(gen / "arrays" / "tree", {"w": np.ones(10)})
            print("inside", flush=True)
            os.kill(os.getpid(), 9)
    """)
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "fresh")],
                          capture_output=True, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert proc.returncode == -9 and b"inside" in proc.stdout
    assert not (tmp_path / "fresh").exists()
    with pytest.raises(CheckpointError, match=r"fresh.*does not exist"):
        load_pytree(tmp_path / "fresh")
    # A later save to the same path works.
    save_pytree(tmp_path / "fresh", {"w": np.ones(1)})
    assert load_pytree(tmp_path / "fresh")["w"].tolist() == [1.0]


def test_doc_path_type(tmp_path):
    assert isinstance(save_pytree(tmp_path / "x", {"a": np.ones(1)}), Path)


def test_template_restores_custom_nodes_in_a_grown_tree(tmp_path):
    params = {"w": jnp.ones((2,))}
    state = optax.adam(1e-3).init(params)
    save_pytree(tmp_path / "t", {"opt": state, "history": [{"loss": 1.0}, {"loss": 0.5}]})
    art = open_artifact(tmp_path / "t")
    out = art.restore("tree", template={"opt": state, "history": []})
    assert type(out["opt"][0]) is type(state[0]) and out["history"] == [{"loss": 1.0}, {"loss": 0.5}]
    chex.assert_trees_all_equal(out["opt"], state)
