#!/usr/bin/env bash
# The token-bias recipe's sigmoid at five β and three seeds on the embedded default, then its table and plot.
#   bash studies/token_bias_beta/run.sh [RUNS]      (RUNS: where the run directories go; default runs/token_bias_beta)
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-runs/token_bias_beta}
mkdir -p "$RUNS"
for seed in 0 1 2; do
  for beta in 0.165 0.17 0.175 0.18 0.185; do
    printf 'training:\n  beta: %s\n' "$beta" > "$RUNS/beta$beta.yaml"
    python3 run_pipeline.py --run-dir "$RUNS/tb_b${beta}_seed$seed" --config "$RUNS/beta$beta.yaml" \
      --recipe token-bias --losses sigmoid --seed "$seed"
  done
done
# what the study keeps of each run: its metrics and training record (enough to table and plot it again)
for run in "$RUNS"/tb_b*_seed*; do
  target=studies/token_bias_beta/runs/$(basename "$run")
  mkdir -p "$target/results/sigmoid" "$target/models/sigmoid"
  cp "$run/results/sigmoid/metrics.json" "$target/results/sigmoid/"
  cp "$run/models/sigmoid/training.config.yaml" "$target/models/sigmoid/"
done
python3 studies/standard_vs_token_bias/table.py studies/token_bias_beta/runs/tb_b* --by-seed
python3 studies/token_bias_beta/plot.py studies/token_bias_beta/runs/tb_b* --out studies/token_bias_beta/beta_seeds.png
