"""The bitwise kernels for this whole process, before any test computes (started alone by tests/test_kernels.py)."""

from sentiment_dpo.kernels import use_bitwise_kernels

use_bitwise_kernels()
