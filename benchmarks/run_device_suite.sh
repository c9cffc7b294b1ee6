#!/usr/bin/env bash
# One command to check modjax on whatever accelerator JAX finds (GPU, TPU or CPU):
# prints the devices, runs the core benchmarks and the multi-device / multi-process
# tests on them, and prints their figures.
#
# Usage: benchmarks/run_device_suite.sh [--quick] [--no-tests] [python]
#   --quick     small sizes and one repeat per benchmark (about a minute of benchmarks on
#               a 2-core CPU); without it the benchmarks run at their default sizes
#   --no-tests  skip the multi-device / multi-process test step (CI runs it on its own)
#   python      the interpreter (default: $PYTHON, else the repository's .venv, else python3)
# Exit status: 0 when every step passed; the failed steps are listed at the end.
set -u
quick=0
tests=1
PY="${PYTHON:-}"
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    --no-tests) tests=0 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    -*) echo "run_device_suite.sh: unknown option $arg" >&2; exit 2 ;;
    *) PY="$arg" ;;
  esac
done
cd "$(dirname "$0")/.."
# the benchmarks run as scripts: make them import this checkout's modjax, not another
# installed copy
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
failed=()
run() {  # run a step, keep going on failure, remember it
  echo; echo "=== $*"
  local t0=$SECONDS
  if "$@"; then
    echo "--- ok ($((SECONDS - t0)) s)"
  else
    echo "!!! failed: $*"; failed+=("$*")
  fi
}
run "$PY" -c "import jax, modjax; print('backend', jax.default_backend(), '| devices', \
jax.devices(), '| modjax from', modjax.__file__)"
if [ "$quick" = 1 ]; then
  run "$PY" benchmarks/bench_train_loop.py --repeats 1 --sizes 5000 --batches 256
  run "$PY" benchmarks/bench_data_batches.py --rows 100000 --cols 16 --repeats 1
  run "$PY" benchmarks/bench_graph_apply.py
  run "$PY" benchmarks/bench_checkpoint.py --repeats 1 --skip-large
  run "$PY" benchmarks/bench_out_of_core.py --rows 2000000 --repeats 1
else
  run "$PY" benchmarks/bench_train_loop.py
  run "$PY" benchmarks/bench_data_batches.py --repeats 3
  run "$PY" benchmarks/bench_graph_apply.py
  run "$PY" benchmarks/bench_checkpoint.py
  run "$PY" benchmarks/bench_out_of_core.py --rows 2000000 4000000
fi
# multi-device / multi-process tests: they pin their subprocesses to 8 forced CPU host
# devices and 2 localhost processes (the layouts they assert), so they check the sharding
# logic on any machine; the benchmarks above run on the accelerator
if [ "$tests" = 1 ]; then
  run "$PY" -m pytest -q -p no:cacheprovider tests/scale tests/train/test_data_parallel.py \
      tests/io/test_device_layout.py --deselect tests/scale/test_device_suite.py
fi
echo
if [ ${#failed[@]} -eq 0 ]; then
  echo "device suite: every step passed"
  exit 0
fi
echo "device suite: ${#failed[@]} step(s) failed:"
printf '  %s\n' "${failed[@]}"
exit 1
