#!/usr/bin/env bash
# The default pipeline with the standard methods and with the token-bias recipe, seeds 0-2 (about 10 min per run on
# 2 cores with the embedded models built), then the table of README.md and this folder's README.
set -euo pipefail
cd "$(dirname "$0")/../.."
for seed in 0 1 2; do
  python3 run_pipeline.py --run-dir runs/standard_seed$seed --seed $seed
  python3 run_pipeline.py --run-dir runs/tokenbias_seed$seed --seed $seed --recipe token-bias
done
python3 studies/standard_vs_token_bias/table.py runs/standard_seed{0,1,2} runs/tokenbias_seed{0,1,2} \
  --copy-to studies/standard_vs_token_bias/runs
