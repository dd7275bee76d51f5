"""Align a small causal LM toward positive movie reviews with a sentiment-classifier reward (TRL preference losses)."""

__version__ = "0.1.0"
