#!/usr/bin/env bash
# `make test-stress`: the whole suite N times in a row (default 5) with two CPU-burning processes
# beside it, so every test runs on a machine slower than any CI will be. Exits 1 if any run failed.
# Each run's pytest summary goes to stress-results/run-K.log; one line per run is printed here.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
runs=${1:-5}
out=stress-results
mkdir -p "$out"
burners=()
stop_burners() { [ ${#burners[@]} -gt 0 ] && kill "${burners[@]}" 2>/dev/null; wait 2>/dev/null; }
trap stop_burners EXIT
for _ in 1 2; do "$PY" -c 'while True: pass' & burners+=($!); done
failed=0
for run in $(seq 1 "$runs"); do
  start=$(date +%s)
  "$PY" -m pytest -q -p no:cacheprovider >"$out/run-$run.log" 2>&1
  rc=$?
  summary=$(tail -n 1 "$out/run-$run.log")
  echo "stress run $run/$runs: exit $rc in $(( $(date +%s) - start )) s: $summary"
  [ $rc = 0 ] || failed=$((failed + 1))
done
echo "stress: $failed of $runs runs failed (two CPU burners beside each; logs in $out/)"
[ $failed = 0 ]
