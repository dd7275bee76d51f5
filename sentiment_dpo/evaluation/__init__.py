"""Measuring a policy: the metrics, the one evaluator, the ceiling (its estimators and its cached reference samples),
intervals and statistics, and the plots."""
