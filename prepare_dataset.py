#!/usr/bin/env python3
"""Stage 2: build winner/loser preference pairs from the scored samples.

A shim over `sentiment_dpo.commands.pairs`."""

import sys

from sentiment_dpo.commands import pairs as main

if __name__ == "__main__":
    sys.exit(main())
