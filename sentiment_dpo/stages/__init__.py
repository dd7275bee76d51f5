"""The four stages, one module each, and the pipeline that runs them (the scripts and `sentiment-dpo` commands):

1. `generate.py`  sample the starting policy on the training prompts and score each sample (`text_generation.py`)
2. `pairs.py`     chosen/rejected pairs from the scored samples (`prepare_dataset.py`)
3. `train.py`     train one method on the pairs, or online (`main.py LOSS`)
4. `evaluate.py`  the trained policy on held-out prompts against the reference and the ceiling
                  (`calculate_metrics.py LOSS`)

`pipeline.py` runs all four for each method and writes SUMMARY.md (`run_pipeline.py`).
"""
