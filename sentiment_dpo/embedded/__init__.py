"""The offline default: the built-in corpus (`corpus.py`), the committed default models and where they live
(`default_models.py`, with the folders `policy/`, `reward/`, `judge/` and the default run's `ceiling/`), and how the
models were trained (`policy_pretraining.py`, `reward_pretraining.py`)."""
