"""A tour of FlowBuilder and the graph tree (seeds 003 and 002) in modjax.

Run: ``python examples/flow_tour.py [out_dir] [--epochs N]``.

Part 1 builds seed 003's flows: an encoder/decoder with tags, split/merge heads with a
tag group, a gate wired with ``using``, a switch, a loop with ``until`` and a map over
slices. Part 2 follows seed 002: an encoder labelled ``"encoder"`` (tags ``scan`` and
``read``) is trained standalone and checkpointed, a bigger model is built around a fresh
encoder, the trained weights are loaded into its ``"encoder"`` subtree, the encoder is
frozen except ``encoder.scan``, and the model trains for a few epochs. Every epoch is
one jitted ``lax.scan`` over the batches; the per-batch losses go to the graph's
observer in one call, and the run writes ``training.html``, ``metrics.csv`` and
``training.log`` into ``out_dir`` (a temporary directory by default).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from modjax import Linear, Optimizer, SequentialMLP
from modjax.flow import Add, FixedSelector, FlowBuilder, Mean, Reshape, SoftmaxRouter, ThresholdHalt
from modjax.train import frozen_mask

# one width throughout, so every Linear(W) on a W-wide stream shares its compiled init
N_BATCHES, BATCH, D, W = 8, 32, 8, 8


# ----------------------------------------------------------------- part 1: seed 003
def seed_003_flows() -> None:
    x = jnp.ones((2, D))

    # encoder/decoder with tags; the decoder reads the encoder's tagged output
    g = (FlowBuilder.from_(Linear(W)).tag("hidden")
         .through(Linear(W)).tag("code")
         .through(Add()).using("hidden")          # skip connection from a tag
         .through(Linear(D)).tag("decoded")
         .build(input_shape=(D,)))
    y = g(x)
    print("encoder/decoder:", y.shape, "hidden:", g.tagged("hidden").shape)

    # split/merge heads with a tag group
    heads = (FlowBuilder.from_(Linear(W))
             .split(Linear(W), Linear(W), Linear(W)).tag_group("head")
             .merge(Mean())
             .build(input_shape=(D,)))
    heads(x)
    print("heads group:", heads.tag_group("head"), "head_0:", heads.tagged("head_0").shape)

    # gate (soft mixture of experts) with the router also seeing an earlier tag
    moe = (FlowBuilder.from_(Linear(W)).tag("ctx")
           .through(Linear(W))
           .gate(SoftmaxRouter(W, 3), Linear(W), Linear(W), Linear(W)).using("ctx")
           .build(input_shape=(D,)))
    print("gate:", moe(x).shape)

    # switch: only the selected branch runs (lax.switch)
    sw = (FlowBuilder.from_(Linear(W)).switch(FixedSelector(1), Linear(W), Linear(W))
          .through(Reshape(2, W // 2))
          .build(input_shape=(D,)))
    print("switch:", sw(x).shape)

    # loop with until: refine until the state's max exceeds 5 (at most 6 steps)
    lp = (FlowBuilder.from_(Linear(W))
          .loop(Linear(W)).until(ThresholdHalt(5.0), 6)
          .build(input_shape=(D,)))
    print("loop until:", lp(x).shape)

    # map over slices: [B, 8] -> 4 slices of 2 -> a read head each -> [B, 4*2]
    mp = (FlowBuilder.from_(Linear(W))
          .map(Linear(2)).slices(4)
          .through(Reshape(4, 2))
          .build(input_shape=(D,)))
    print("map over slices:", mp(x).shape)
    print(mp.dot().splitlines()[0], "...", f"({len(mp.dot().splitlines())} DOT lines)")


# ----------------------------------------------------------------- part 2: seed 002
def make_encoder():
    return (FlowBuilder.from_(SequentialMLP(output_shape=(W,), n_layers=1, hidden_dim=W))
            .tag("scan")
            .through(Linear(W)).tag("read")
            .label("encoder")
            .build())


def make_data(seed: int = 0):
    """A smooth regression target; numpy on the host (data is not the point here)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N_BATCHES, BATCH, D)).astype(np.float32)
    xv = rng.standard_normal((128, D)).astype(np.float32)

    def f(v):
        return np.sin(v[..., :1] * 1.5) + 0.3 * v[..., 1:2] * v[..., 2:3]

    return (jnp.asarray(x), jnp.asarray(f(x))), (jnp.asarray(xv), jnp.asarray(f(xv)))


def make_epoch(graph, opt):
    """One jitted epoch: lax.scan over the batches, pure in (params, state, opt_state)."""

    def loss_fn(params, state, xb, yb):
        pred, state = graph.apply(params, state, xb, train=True)
        return jnp.mean((pred - yb) ** 2), state

    @jax.jit
    def epoch(params, state, opt_state, frozen, xs, ys):
        def step(carry, batch):
            params, state, opt_state = carry
            (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                params, state, *batch)
            params, opt_state = opt.update(grads, opt_state, params, frozen=frozen)
            return (params, state, opt_state), loss

        (params, state, opt_state), losses = jax.lax.scan(
            step, (params, state, opt_state), (xs, ys))
        return params, state, opt_state, losses

    return epoch


def train(graph, data, val, epochs, lr, *, observe=True):
    (xs, ys), (xv, yv) = data, val
    opt = Optimizer("adam", opt_kwargs={"lr": lr})
    v = graph.variables
    # commit every array to one device: a mix of committed (loaded from a checkpoint) and
    # uncommitted (fresh) leaves would make the second epoch call compile again
    params, state = jax.device_put((v["params"], v["state"]), jax.devices()[0])
    opt_state = jax.device_put(opt.init(params), jax.devices()[0])
    epoch = make_epoch(graph, opt)
    frozen = frozen_mask(params, graph.frozen_paths)
    graph.mark_start()
    for _ in range(epochs):
        params, state, opt_state, losses = epoch(params, state, opt_state, frozen, xs, ys)
        graph.set_variables({"params": params, "state": state})
        if observe:
            graph.record_batches({"loss": losses})           # one host transfer per epoch
            pred = graph(xv)                                 # eager forward: tags captured
            graph.record("val_loss", float(jnp.mean((pred - yv) ** 2)))
            graph.record_at("encoder.read_scale",
                            float(jnp.abs(graph.tagged_at("encoder.read")).mean()))
            graph.flush()                                    # the whole tree
    return params


def seed_002_tree(out_dir: Path, epochs: int) -> dict:
    data, val = make_data(0)

    # Step 1: train the encoder standalone (with a throwaway linear head), checkpoint it
    encoder = make_encoder()
    pretrain = FlowBuilder.from_(encoder).through(Linear(1)).build(input_shape=(D,))
    train(pretrain, data, val, epochs=3, lr=1e-2, observe=False)
    encoder.initialize((D,))
    encoder.set_variables({"params": pretrain.parameters_at("encoder"),
                           "state": pretrain.variables["state"]["encoder"]})
    encoder.save_checkpoint(out_dir / "encoder_v1", overwrite=True)

    # Step 2: a bigger model around a fresh encoder; load the pre-trained weights
    model = (FlowBuilder.from_(make_encoder()).tag("features")
             .split(Linear(W), Linear(W)).tag_group("head").merge(Add())
             .also(Linear(W))
             .through(Linear(1)).tag("pred")
             .verbose(True)
             .build(input_shape=(D,)))
    report = model.load_subgraph_checkpoint("encoder", out_dir / "encoder_v1")
    print(f"loaded {len(report.loaded)}/{len(report.loaded) + len(report.missing)} arrays "
          "into 'encoder'")

    # Step 3: freeze the encoder but keep fine-tuning its scan stage
    model.freeze("encoder")
    model.thaw("encoder.scan")
    print("frozen:", model.frozen_paths, "| encoder.read frozen:", model.is_frozen("encoder.read"))
    read_before = model.parameters_at("encoder.read")

    train(model, data, val, epochs=epochs, lr=5e-3)
    assert all(bool((a == b).all()) for a, b in zip(
        jax.tree.leaves(read_before), jax.tree.leaves(model.parameters_at("encoder.read"))))
    print(model.param_summary())

    tags = ("loss", "val_loss", "encoder.read_scale")  # dotted: the encoder child's metric
    model.plot_html(out_dir / "training.html", *tags)
    model.export_trends(out_dir / "metrics.csv", *tags)
    model.write_log(out_dir / "training.log", epochs, *tags)
    losses = model.trend("loss")
    print(f"loss {losses.values()[0]:.4f} -> {losses.latest():.4f} over {len(losses)} epochs; "
          f"improving: {losses.improving(0)}")
    print("latest metrics:", model.latest_metrics())

    # profile one forward node by node and colour the DOT by time
    model.enable_profiling()
    model(val[0])
    model(val[0])
    print(model.profile())
    (out_dir / "profile.dot").write_text(model.dot_with_profile())
    return {"first": float(losses.values()[0]), "last": losses.latest(),
            "read_frozen": True}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", nargs="?", default=None)
    ap.add_argument("--epochs", type=int, default=6)
    args = ap.parse_args(argv)
    out_dir = Path(args.out_dir or tempfile.mkdtemp(prefix="flow_tour_"))
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_003_flows()
    result = seed_002_tree(out_dir, args.epochs)
    print(f"wrote {', '.join(sorted(p.name for p in out_dir.iterdir()))} to {out_dir}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
