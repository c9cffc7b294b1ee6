#!/usr/bin/env bash
# One command to check modjax on whatever accelerator JAX finds (GPU, TPU or CPU):
# prints the devices, runs the core benchmarks and the multi-device / multi-process
# tests on them, and prints their figures. Usage: benchmarks/run_device_suite.sh [python]
set -u
PY="${1:-${PYTHON:-python}}"
cd "$(dirname "$0")/.."
status=0
run() {  # run a step, keep going on failure, remember it
  echo; echo "=== $*"
  "$@" || { echo "!!! failed: $*"; status=1; }
}
run "$PY" -c "import jax; print('backend', jax.default_backend(), '| devices', jax.devices())"
run "$PY" benchmarks/bench_train_loop.py
run "$PY" benchmarks/bench_data_batches.py --repeats 3
run "$PY" benchmarks/bench_graph_apply.py
run "$PY" benchmarks/bench_checkpoint.py
run "$PY" benchmarks/bench_out_of_core.py --rows 1000000
# multi-device / multi-process tests: they pin their subprocesses to 8 forced CPU host
# devices and 2 localhost processes (the layouts they assert), so they check the sharding
# logic on any machine; the benchmarks above run on the accelerator
run "$PY" -m pytest -q -p no:cacheprovider tests/scale tests/train/test_data_parallel.py \
    tests/io/test_device_layout.py
exit $status
