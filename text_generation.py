#!/usr/bin/env python3
"""Stage 1: sample reviews from the starting policy and score each with the sentiment classifier.

A shim over `sentiment_dpo.commands.generate`."""

import sys

from sentiment_dpo.commands import generate as main

if __name__ == "__main__":
    sys.exit(main())
