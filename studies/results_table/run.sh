#!/usr/bin/env bash
# The README's results table on the CPU's own kernels (3 seeds x the standard methods and the token-bias recipe), the
# first run's time (the default, seed 0, with an empty cache: the README's first command), the small --bitwise check
# twice (the same bytes) and the cost of --bitwise; then the table, and a copy of every run for the repository.
# One run at a time. Usage: bash studies/results_table/run.sh OUT
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:?a scratch folder}
mkdir -p "$out"
export SENTIMENT_DPO_CACHE=$out/cache TQDM_DISABLE=1
/usr/bin/time -v python3 run_pipeline.py --run-dir "$out/standard_seed0" 2> "$out/standard_seed0.time"
python3 run_pipeline.py --run-dir "$out/tokenbias_seed0" --seed 0 --recipe token-bias
for seed in 1 2; do
  python3 run_pipeline.py --run-dir "$out/standard_seed$seed" --seed "$seed"
  python3 run_pipeline.py --run-dir "$out/tokenbias_seed$seed" --seed "$seed" --recipe token-bias
done
for copy in 1 2; do
  python3 run_pipeline.py --config configs/pipeline/bitwise_check.yaml --run-dir "$out/bitwise_check$copy"
done
python3 scripts/compare_runs.py "$out/bitwise_check1" "$out/bitwise_check2"
for run in "$out"/standard_seed? "$out"/tokenbias_seed?; do python3 scripts/check_targets.py "$run"; done
python3 benchmarks/bench_bitwise.py --num-samples 1024 --max-steps 30 --repeats 2
python3 scripts/results_table.py "$out"/standard_seed? "$out"/tokenbias_seed? --copy-to studies/results_table/runs
python3 scripts/results_table.py "$out/bitwise_check1" --copy-to studies/results_table/runs
mv studies/results_table/runs/bitwise_check1 studies/results_table/runs/bitwise_check
