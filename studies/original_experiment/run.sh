#!/usr/bin/env bash
# The original experiment at real size on this machine, with stand-ins of its models (random weights: cost only).
# Per-unit costs first (they feed the estimate each run prints), then each run from an empty cache.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=${WORK:-/tmp/original_experiment}
python3 scripts/rehearse_reference.py --out "$work/rehearsal"
export HF_HUB_OFFLINE=1 HF_HUB_CACHE="$work/rehearsal/hub"
base="$work/cache_base"  # the models and corpus of a user cache, none of its results
python3 -c "import sys; sys.path.insert(0, 'benchmarks'); import unit_costs, pathlib, os; \
unit_costs.fresh_cache(pathlib.Path(os.path.expanduser('~/.cache/sentiment_dpo')), pathlib.Path('$base'))"
python3 benchmarks/unit_costs.py --preset reference --prompts "$work/rehearsal/imdb" --cache "$base" \
    --work "$work/unit_costs" --write
for name in seed reference; do
  rm -rf "$work/cache_$name" && cp -r "$base" "$work/cache_$name"
  extra=(); [ "$name" = seed ] && extra=(--config configs/pipeline/seed.yaml)
  SENTIMENT_DPO_CACHE="$work/cache_$name" /usr/bin/time -v python3 run_pipeline.py "${extra[@]}" \
      --preset reference --prompts "$work/rehearsal/imdb" --run-dir "$work/$name" 2>&1 | tee "$work/$name.log" \
      | grep -E "estimate for this run|took|Maximum resident|Elapsed"
done
