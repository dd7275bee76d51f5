"""The embedded default's targets: one home for their numbers, the rows SUMMARY.md and check_targets.py print."""

import json

from sentiment_dpo import files, layout
from sentiment_dpo.stages.pipeline import DISTINCT_2_CHANGE, P_POSITIVE_GAIN, Target, target_checks


def write_run(run_dir, results: dict) -> None:
    files.write_yaml(run_dir / layout.GENERATION_CONFIG, {"reward": "some/classifier", "policy": "p"})
    for loss, (start, end, d2_ref, d2_policy) in results.items():
        folder = run_dir / layout.results_dir(loss)
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({
            "reference": {"p_positive_mean": start, "distinct_2": d2_ref},
            "policy": {"p_positive_mean": end, "distinct_2": d2_policy}}))


def test_the_rows_state_and_apply_the_targets(tmp_path):
    # sigmoid: +0.25 and -5% pass; hinge: +0.19 fails the gain, -11% fails the diversity; ipo: no targets
    write_run(tmp_path, {"sigmoid": (0.40, 0.65, 0.80, 0.76), "hinge": (0.40, 0.59, 0.80, 0.712),
                         "ipo": (0.40, 0.41, 0.80, 0.40)})
    rows = target_checks(tmp_path, ["sigmoid", "hinge", "ipo"])
    assert rows == [
        ("starting policy: mean p_positive in [0.25, 0.75]", "0.400", True),
        ("sigmoid: p_positive gain >= 0.2", "+0.250", True),
        ("sigmoid: distinct-2 change in [-10%, +10%]", "-5.0%", True),
        ("hinge: p_positive gain >= 0.2", "+0.190", False),
        ("hinge: distinct-2 change in [-10%, +10%]", "-11.0%", False),
        ("ipo: p_positive gain", "+0.010", None),
        ("ipo: distinct-2 change", "-50.0%", None),
    ]


def test_a_target_is_an_interval():
    assert Target("x", 0.25, 0.75).holds(0.25) and Target("x", 0.25, 0.75).holds(0.75)
    assert not Target("x", 0.25, 0.75).holds(0.76) and not P_POSITIVE_GAIN.holds(0.199)
    assert DISTINCT_2_CHANGE.holds(0.10) and not DISTINCT_2_CHANGE.holds(-0.1001)
