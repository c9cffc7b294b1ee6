"""A tour of modjax.observe on a scan-trained model (seed 003's observation layer).

Run: ``python examples/observe_tour.py [out_dir]``. A small MLP is trained with optax;
each epoch is one jitted ``lax.scan`` whose per-batch metrics go to an ``Observer`` in
one call. Trend queries drive the run: halve the learning rate when the validation loss
stalls, stop when it has converged. The run ends by writing ``training.html`` (open it
in any browser, offline), ``metrics.csv`` and ``training.log``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

from modjax.observe import Observer, format_duration

N_BATCHES, BATCH, MAX_EPOCHS = 16, 32, 60


def make_data(key):
    kx, kv = jax.random.split(key)
    x = jax.random.normal(kx, (N_BATCHES, BATCH, 8))
    xv = jax.random.normal(kv, (256, 8))

    def f(v):
        return jnp.sin(v[..., :1] * 2.0) + 0.5 * v[..., 1:2] ** 2

    return (x, f(x)), (xv, f(xv))


def init_params(key):
    k1, k2 = jax.random.split(key)
    return {"w1": jax.random.normal(k1, (8, 32)) * 0.3, "b1": jnp.zeros(32),
            "w2": jax.random.normal(k2, (32, 1)) * 0.3, "b2": jnp.zeros(1)}


def predict(p, x):
    return jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]


def mse(p, x, y):
    return jnp.mean((predict(p, x) - y) ** 2)


def run(out: Path) -> Observer:
    (x, y), (xv, yv) = make_data(jax.random.PRNGKey(0))
    opt = optax.inject_hyperparams(optax.adam)(learning_rate=0.03)

    def step(carry, batch):
        p, s = carry
        loss, g = jax.value_and_grad(mse)(p, *batch)
        upd, s = opt.update(g, s, p)
        return (optax.apply_updates(p, upd), s), {"loss": loss, "grad_norm": optax.global_norm(g)}

    epoch = jax.jit(lambda c: jax.lax.scan(step, c, (x, y)))  # compiled once
    val_loss = jax.jit(mse)

    params = init_params(jax.random.PRNGKey(1))
    carry = (params, opt.init(params))
    obs = Observer(tag_groups={"losses": ["loss", "val_loss"]}, name="observe_tour")
    obs.on_flush(lambda m: None)  # a hook sees {tag: epoch mean}; e.g. send to a dashboard
    obs.mark_start()
    last_decay = 0
    for e in range(1, MAX_EPOCHS + 1):
        carry, metrics = epoch(carry)
        obs.record_batches(metrics)                         # one host transfer per epoch
        obs.record("val_loss", val_loss(carry[0], xv, yv))
        obs.record("lr", carry[1].hyperparams["learning_rate"])
        obs.flush()
        val = obs.trend("val_loss")
        if val.stalled(4, 3e-3) and e - last_decay >= 4:  # plateau: halve lr, then wait
            carry[1].hyperparams["learning_rate"] = carry[1].hyperparams["learning_rate"] * 0.5
            last_decay = e
            print(f"epoch {e}: val_loss stalled (slope {val.slope(4):+.2e}), lr halved")
        if val.converged(6, 1e-8):
            print(f"epoch {e}: val_loss converged, stopping")
            break
        if e % 10 == 0:
            print(f"epoch {e}: loss {obs.trend('loss').latest():.4f}  "
                  f"val {val.latest():.4f}  ETA {format_duration(obs.eta(MAX_EPOCHS, window=5))}")

    obs.plot_html(out / "training.html", "losses", "grad_norm", "lr", log_y=["losses", "lr"])
    obs.export_trends(out / "metrics.csv")
    obs.write_log(out / "training.log", MAX_EPOCHS, "loss", "val_loss", "lr")
    loss = obs.trend("val_loss")
    print(f"{obs.flush_count()} epochs in {format_duration(obs.elapsed())}: val_loss "
          f"{loss.values()[0]:.4f} -> {loss.latest():.4f} (best {loss.min():.4f} at epoch "
          f"{loss.argmin()})")
    print(f"wrote {out / 'training.html'}, metrics.csv, training.log")
    return obs


def main(argv: list[str] | None = None) -> Observer:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else Path(tempfile.mkdtemp(prefix="modjax-observe-"))
    out.mkdir(parents=True, exist_ok=True)
    return run(out)


if __name__ == "__main__":
    main()
