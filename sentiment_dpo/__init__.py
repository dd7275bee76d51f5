"""Align a small causal LM toward positive movie reviews with a sentiment-classifier reward (TRL preference losses)."""

from importlib.metadata import version

__version__ = version("sentiment-dpo")  # the installed package's: pyproject.toml is its one home
