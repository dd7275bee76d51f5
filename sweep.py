#!/usr/bin/env python3
"""Sweep: grids of trainings on shared pairs, evaluated as they train, and report.md.

A shim over `sentiment_dpo.commands.sweep`."""

import sys

from sentiment_dpo.commands import sweep as main

if __name__ == "__main__":
    sys.exit(main())
