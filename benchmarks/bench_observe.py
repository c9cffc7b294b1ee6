"""Cost of observing a scan-driven training run, against the same run unobserved.

Workload: a 2-layer MLP (16 -> 64 -> 1) trained with optax Adam, one epoch = one
jitted ``lax.scan`` over ``--batches`` batches of 32 samples, ``--epochs`` epochs.

What is timed (min of ``--repeats`` interleaved runs, same process, compiled beforehand;
the min is the figure least disturbed by other load on the machine):
  bare      ``carry, metrics = epoch(carry)`` then ``block_until_ready(metrics)``: the
            reference (the metrics stay on the device).
  fetched   bare plus ``jax.device_get(metrics)``: the least any loop that looks at its
            losses pays.
  observed  bare plus ``observer.record_batches(metrics, weights)`` (which fetches the
            metrics; host weights, as a TrainPhase passes them) and ``observer.flush()``
            per epoch (+ a trend query, as an LR-plateau callback would).
  host cost the Observer's own CPU time per epoch (``time.process_time``, steady under
            machine load): record_batches + flush + a trend query on metrics already
            on the host, averaged over 2000 epochs.
  CPU       each run's process CPU time (XLA's threads included) next to its wall time:
            on a machine shared with other jobs the wall clock also counts time the
            process waited for a core, the CPU time does not.
  per-batch the eager alternative: a jitted step per batch and ``observer.record(tag,
            float(loss))`` per batch (host sync every batch), for contrast.

Profiling (a flow graph: Linear -> split(3 x Linear) -> Mean -> Linear, batch 256):
  never     eager ``graph(x)`` of a graph that never had profiling enabled: the reference.
  disabled  the same on a graph after ``enable_profiling()``, one profiled forward and
            ``disable_profiling()``: must cost the same (the forward checks one bool).
  enabled   profiled forwards (node by node, each waited on), for contrast.
  (min over interleaved rounds of the median time of ``--forwards`` calls each)

Run:  .venv/bin/python benchmarks/bench_observe.py [--epochs 50] [--batches 100] [--repeats 5]
      [--forwards 200]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from modjax import Linear
from modjax.flow import FlowBuilder, Mean
from modjax.observe import Observer


def build(n_batches: int):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(k1, (n_batches, 32, 16))
    y = jnp.sin(x.sum(-1, keepdims=True))
    params = {"w1": jax.random.normal(k2, (16, 64)) * 0.2, "b1": jnp.zeros(64),
              "w2": jax.random.normal(k3, (64, 1)) * 0.2, "b2": jnp.zeros(1)}
    opt = optax.adam(1e-3)

    def loss_fn(p, xb, yb):
        h = jax.nn.relu(xb @ p["w1"] + p["b1"])
        return jnp.mean((h @ p["w2"] + p["b2"] - yb) ** 2)

    def step(carry, batch):
        p, s = carry
        loss, g = jax.value_and_grad(loss_fn)(p, *batch)
        upd, s = opt.update(g, s, p)
        return (optax.apply_updates(p, upd), s), {"loss": loss, "gnorm": optax.global_norm(g)}

    epoch = jax.jit(lambda c: jax.lax.scan(step, c, (x, y)))
    step_jit = jax.jit(step)
    carry0 = (params, opt.init(params))
    # per-batch real-sample counts live on the host (a phase derives them from its index
    # plan), so they add no device transfer
    weights = np.full((n_batches,), 32.0)
    return epoch, step_jit, carry0, (x, y), weights


def run_bare(epoch, carry, epochs):
    for _ in range(epochs):
        carry, m = epoch(carry)
        jax.block_until_ready(m)
    return carry


def run_fetched(epoch, carry, epochs):
    for _ in range(epochs):
        carry, m = epoch(carry)
        jax.device_get(m)
    return carry


def run_observed(epoch, carry, epochs, weights):
    obs = Observer()
    obs.mark_start()
    for _ in range(epochs):
        carry, m = epoch(carry)
        obs.record_batches(m, weights)
        obs.flush()
        obs.trend("loss").stalled(5, 1e-4)
    return carry, obs


def run_per_batch(step_jit, carry, epochs, data):
    x, y = data
    obs = Observer()
    for _ in range(epochs):
        for b in range(x.shape[0]):
            carry, m = step_jit(carry, (x[b], y[b]))
            obs.record("loss", float(m["loss"]))
            obs.record("gnorm", float(m["gnorm"]))
        obs.flush()
    return carry, obs


def flow_graph(width: int):
    return (FlowBuilder.from_(Linear(width)).tag("hidden")
            .split(Linear(width), Linear(width), Linear(width)).tag_group("head")
            .merge(Mean()).through(Linear(1)).tag("out").build(input_shape=(width,)))


def bench_profiling(rounds: int, forwards: int, width: int = 64) -> dict[str, float]:
    """Seconds per eager forward: never profiled, profiling disabled again, profiled."""
    x = jax.random.normal(jax.random.PRNGKey(1), (256, width))
    never, disabled, enabled = flow_graph(width), flow_graph(width), flow_graph(width)
    enabled.enable_profiling()
    disabled.enable_profiling()
    for g in (never, disabled, enabled):
        jax.block_until_ready(g(x))  # build, init, compile
    disabled.disable_profiling()
    jax.block_until_ready(disabled(x))

    def per_call(g):
        ts = []
        for _ in range(forwards):
            t0 = time.perf_counter()
            jax.block_until_ready(g(x))
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    best = {"never": float("inf"), "disabled": float("inf"), "enabled": float("inf")}
    for _ in range(rounds):  # interleaved, min over rounds: load spikes hit all alike
        for k, g in (("never", never), ("disabled", disabled), ("enabled", enabled)):
            best[k] = min(best[k], per_call(g))
    assert disabled.profile() is not None and never.profile() is None
    return best


def timed(fn, repeats):
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--batches", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--forwards", type=int, default=200)
    a = ap.parse_args()
    epoch, step_jit, carry0, data, weights = build(a.batches)
    run_bare(epoch, carry0, 2)  # compile
    run_observed(epoch, carry0, 2, weights)
    run_per_batch(step_jit, carry0, 1, data)
    # interleave the variants each repeat so drift in machine load hits all alike
    runs = {"bare": lambda: run_bare(epoch, carry0, a.epochs),
            "fetched": lambda: run_fetched(epoch, carry0, a.epochs),
            "observed": lambda: run_observed(epoch, carry0, a.epochs, weights)}
    times = {k: [] for k in runs}
    cpu = {k: [] for k in runs}
    for _ in range(a.repeats):
        for k, fn in runs.items():
            c0 = time.process_time()
            times[k].append(timed(fn, 1))
            cpu[k].append(time.process_time() - c0)
    t = {k: min(v) for k, v in times.items()}
    c = {k: min(v) for k, v in cpu.items()}
    per_epochs = max(1, a.epochs // 5)
    t_per = timed(lambda: run_per_batch(step_jit, carry0, per_epochs, data),
                  max(1, a.repeats // 3)) * (a.epochs / per_epochs)
    ref, n = t["bare"], a.epochs
    print(f"{n} epochs x {a.batches} batches, min of {a.repeats} interleaved repeats")
    print(f"bare scan          {ref * 1e3:9.1f} ms  ({ref / n * 1e3:.2f} ms/epoch)   "
          f"CPU {c['bare'] * 1e3:9.1f} ms")
    for k in ("fetched", "observed"):
        print(f"{k + ' scan':<18} {t[k] * 1e3:9.1f} ms  ratio {t[k] / ref:.3f}  "
              f"(+{(t[k] - ref) / n * 1e6:.0f} us/epoch)   CPU ratio {c[k] / c['bare']:.3f}")
    print(f"observed / fetched {t['observed'] / t['fetched']:.3f}  (modjax's own share)   "
          f"CPU {c['observed'] / c['fetched']:.3f}")
    host = jax.device_get(epoch(carry0)[1])
    w_host = weights
    obs = Observer()
    c0 = time.process_time()
    for _ in range(2000):
        obs.record_batches(host, w_host)
        obs.flush()
        obs.trend("loss").stalled(5, 1e-4)
    host_us = (time.process_time() - c0) / 2000 * 1e6
    print(f"observer host cost {host_us:9.1f} us CPU/epoch ({len(host)} metrics x {a.batches} "
          f"batches) = {host_us / (ref / n * 1e6):.3f} of a bare epoch's wall time, "
          f"{host_us / (c['bare'] / n * 1e6):.3f} of its CPU time")
    print(f"per-batch + record {t_per * 1e3:9.1f} ms  ratio {t_per / ref:.2f}  (extrapolated)")
    prof = bench_profiling(a.repeats, a.forwards)
    ref = prof["never"]
    print(f"eager flow forward, profiling never enabled {ref * 1e6:8.1f} us")
    print(f"  profiling disabled again                  {prof['disabled'] * 1e6:8.1f} us  "
          f"ratio {prof['disabled'] / ref:.3f}")
    print(f"  profiling enabled (node by node)          {prof['enabled'] * 1e6:8.1f} us  "
          f"ratio {prof['enabled'] / ref:.2f}")


if __name__ == "__main__":
    main()
