#!/usr/bin/env python3
"""All four stages in order, for one or more losses, and SUMMARY.md.

A shim over `sentiment_dpo.commands.pipeline`."""

import sys

from sentiment_dpo.commands import pipeline as main

if __name__ == "__main__":
    sys.exit(main())
