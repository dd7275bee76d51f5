#!/usr/bin/env python3
"""Stage 3: train the starting policy with the given LOSS (models/LOSS).

A shim over `sentiment_dpo.commands.train`."""

import sys

from sentiment_dpo.commands import train as main

if __name__ == "__main__":
    sys.exit(main())
