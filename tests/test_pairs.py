import pytest

from sentiment_dpo.errors import PipelineError
from sentiment_dpo.stages.pairs import build_pairs, candidate_pairs


def rows(*items):
    return [{"prompt": p, "completion": c, "reward": r, "p_positive": 0.5} for p, c, r in items]


DATA = rows(("x", "a", 3.0), ("x", "b", 1.0), ("x", "c", 0.5), ("y", "d", 2.0), ("y", "e", 2.0), ("y", "f", -1.0))


def test_random_pairs_share_a_prompt_and_put_the_higher_reward_first():
    pairs = candidate_pairs(DATA, "random", 0.0)
    # x: (a,b) (a,c) (b,c); y: (d,f) (e,f); the d/e tie has no winner
    assert sorted(pairs) == sorted([(0, 1), (0, 2), (1, 2), (3, 5), (4, 5)])


def test_margin_pairs_drop_small_gaps():
    assert sorted(candidate_pairs(DATA, "margin", 1.0)) == sorted([(0, 1), (0, 2), (3, 5), (4, 5)])


def test_best_worst_is_one_pair_per_prompt():
    assert sorted(candidate_pairs(DATA, "best_worst", 0.0)) == [(0, 2), (3, 5)]


def test_a_text_is_never_paired_with_itself():
    same = rows(("x", "same", 1.0), ("x", "same", 0.0), ("x", "other", 0.5))
    assert all(same[winner]["completion"] != same[loser]["completion"]
               for winner, loser in candidate_pairs(same, "random", 0.0))


def test_build_pairs_rows_and_seeding():
    pairs = build_pairs(DATA, 3, "random", 0.0, seed=1)
    assert len(pairs) == 3
    for p in pairs:
        assert p["chosen_reward"] > p["rejected_reward"]
        assert p["chosen"] != p["rejected"]
        assert set(p) >= {"prompt", "chosen", "rejected", "chosen_reward", "rejected_reward"}
    assert pairs == build_pairs(DATA, 3, "random", 0.0, seed=1)
    assert len({(p["chosen"], p["rejected"]) for p in pairs}) == 3  # without replacement


def test_more_pairs_than_the_texts_allow_is_a_clear_error():
    with pytest.raises(PipelineError, match=r"asked for 6 pairs .* allow only 5"):
        build_pairs(DATA, 6, "random", 0.0, seed=0)


def test_zero_pairs_means_every_admissible_pair():
    pairs = build_pairs(DATA, 0, "random", 0.0, seed=0)
    assert sorted((p["chosen"], p["rejected"]) for p in pairs) == sorted(
        [("a", "b"), ("a", "c"), ("b", "c"), ("d", "f"), ("e", "f")])
    assert len(build_pairs(DATA, 0, "margin", 1.0, seed=0)) == 4
