#!/usr/bin/env python3
"""Print the embedded default's targets for a finished run (reward accuracy, starting p_positive, gain, diversity).

    python3 scripts/check_targets.py runs/default
Exit code 1 if a target is missed.
"""

import argparse
import sys
from pathlib import Path



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", nargs="?",
                        help="a run directory of run_pipeline.py (default: the pipeline's default run directory)")
    parser.add_argument("--losses", nargs="+", help="losses the run trained (default: the pipeline's default)")
    args = parser.parse_args(argv)

    from sentiment_dpo.errors import PipelineError
    from sentiment_dpo.stages.pipeline import PipelineConfig, target_checks

    default = PipelineConfig()  # what an unset run_pipeline.py option ran with
    args.run_dir = args.run_dir or default.run_dir
    args.losses = args.losses or default.losses

    try:
        rows = target_checks(Path(args.run_dir), args.losses)
    except (PipelineError, FileNotFoundError) as err:
        print(f"error: {err}; run `python3 run_pipeline.py --run-dir {args.run_dir}` first", file=sys.stderr)
        return 2
    for what, measured, passed in rows:
        verdict = "" if passed is None else ("PASS" if passed else "FAIL")
        print(f"{verdict:4}  {what}: {measured}")
    return 1 if any(passed is False for _, _, passed in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
