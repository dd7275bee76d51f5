#!/usr/bin/env python3
"""Stage 4: reference vs models/LOSS on held-out prompts (results/LOSS).

A shim over `sentiment_dpo.commands.evaluate`."""

import sys

from sentiment_dpo.commands import evaluate as main

if __name__ == "__main__":
    sys.exit(main())
