"""Prompts from the user's own source: every kind of source, the rules, held-out records kept apart, the errors."""

import json
import random

import pytest

from sentiment_dpo import commands, layout
from sentiment_dpo import files
from sentiment_dpo.errors import PipelineError
from sentiment_dpo.prompt_source import SourceSpec, load_records
from sentiment_dpo.prompts import PromptSettings, choose_prompts, prompt_pools
from tiny import fake_sentence

GEN_ARGS = ["--num-samples", "16", "--samples-per-prompt", "4", "--max-new-tokens", "4", "--batch-size", "8"]
METRICS_ARGS = ["--num-prompts", "4", "--batch-size", "8", "--ceiling-samples", "2", "--judge", "none"]


def records(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [fake_sentence(rng, i % 2 == 0) for i in range(count)]


def write_source(folder, kind: str, texts: list[str], column: str = "text"):
    """`texts` as a source of `kind`: txt, jsonl, csv, parquet, or a save_to_disk Dataset / DatasetDict."""
    import datasets

    if kind == "txt":
        path = folder / "prompts.txt"
        path.write_text("".join(t + "\n" for t in texts))
    elif kind == "jsonl":
        path = folder / "prompts.jsonl"
        path.write_text("".join(json.dumps({column: t, "id": i}) + "\n" for i, t in enumerate(texts)))
    elif kind == "csv":
        path = folder / "prompts.csv"
        datasets.Dataset.from_dict({column: texts}).to_csv(str(path), index=False)
    elif kind == "parquet":
        path = folder / "prompts.parquet"
        datasets.Dataset.from_dict({column: texts}).to_parquet(str(path))
    elif kind == "dataset":
        path = folder / "dataset"
        datasets.Dataset.from_dict({column: texts}).save_to_disk(str(path))
    else:  # the IMDb shape: train and test splits with text and label columns
        path = folder / "imdb"
        half = len(texts) // 2
        datasets.DatasetDict({
            "train": datasets.Dataset.from_dict({column: texts[:half], "label": [0] * half}),
            "test": datasets.Dataset.from_dict({column: texts[half:], "label": [1] * (len(texts) - half)}),
        }).save_to_disk(str(path))
    return path


@pytest.mark.parametrize("kind", ["txt", "jsonl", "csv", "parquet", "dataset"])
def test_every_file_kind_gives_the_same_records_and_a_seeded_heldout_share(tmp_path, kind):
    texts = records(20)
    loaded = load_records(SourceSpec(str(write_source(tmp_path, kind, texts)), seed=3))
    assert sorted(loaded.train + loaded.heldout) == sorted(texts)
    assert len(loaded.heldout) == 4 and not set(loaded.heldout) & set(loaded.train)  # 0.2 of 20, disjoint
    # the held-out share is a function of the seed and the records, whatever the kind of file
    again = load_records(SourceSpec(str(write_source(tmp_path, "txt", texts)), seed=3))
    assert loaded.heldout == again.heldout and loaded.provenance["records_sha256"] == \
        again.provenance["records_sha256"]
    other_seed = load_records(SourceSpec(str(write_source(tmp_path, "txt", texts)), seed=4))
    assert other_seed.heldout != loaded.heldout


def test_a_dataset_with_a_test_split_holds_that_split_out(tmp_path):
    texts = records(10)
    folder = str(write_source(tmp_path, "splits", texts))
    loaded = load_records(SourceSpec(folder))
    assert loaded.train == texts[:5] and loaded.heldout == texts[5:]
    assert loaded.provenance["heldout_split"] == "test" and loaded.provenance["train_split"] == "train"
    with pytest.raises(PipelineError, match=r"no such split \(its splits: train, test\)"):
        load_records(SourceSpec(folder, heldout_split="validation"))
    with pytest.raises(PipelineError, match="--heldout-fraction does nothing here"):
        load_records(SourceSpec(folder, heldout_fraction=0.3))


def test_the_rules_make_prompts_as_documented(tmp_path, tiny_policy):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_policy)
    texts = ["the movie was great and moving .", "", "   ", "the movie was great and moving .",
             "the plot is dull " * 20, "a b"]
    source = str(write_source(tmp_path, "txt", texts))
    whole = prompt_pools(PromptSettings(source=source, words=0, heldout_fraction=0.5), tokenizer, 20)
    made = set(whole.train) | set(whole.heldout)
    # blank lines dropped, the repeat kept once, the 80-word record too long for 20 tokens
    assert made == {"the movie was great and moving .", "a b"} and not set(whole.train) & set(whole.heldout)
    words = prompt_pools(PromptSettings(source=source, words=3, heldout_fraction=0.5), tokenizer, 20)
    assert set(words.train) | set(words.heldout) <= {"the movie was", "the plot is", "a b"}
    tokens = prompt_pools(PromptSettings(source=str(write_source(tmp_path, "txt", records(60))), tokens=(2, 4)),
                          tokenizer, 40)
    prefixes = token_prefixes(tokenizer, records(60), 2, 4)
    made = tokens.train + tokens.heldout
    assert all(p in prefixes for p in made) and not set(tokens.train) & set(tokens.heldout)
    # both ends of the range are drawn among 60 records (the text of a 2-token prefix need not retokenize to 2)
    assert {prefixes[p] for p in made} == {2, 3, 4}


def token_prefixes(tokenizer, texts: list[str], low: int, high: int) -> dict[str, int]:
    """Every text of the first k tokens of a record, k in [low, high] (by hand: decode the record's first ids)."""
    out = {}
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        for k in range(low, high + 1):
            out.setdefault(tokenizer.decode(ids[:k]).strip(), k)
    return out


def test_heldout_prompts_that_are_also_training_prompts_are_removed(tmp_path):
    texts = [f"shared opening words {i} here" for i in range(10)]
    pools = prompt_pools(PromptSettings(source=str(write_source(tmp_path, "txt", texts)), words=2))
    assert pools.train == ["shared opening"] and pools.heldout == []
    with pytest.raises(PipelineError, match=r"asked for 1 held-out prompts but .*prompts.txt gives 0 \(the first 2 "
                                            r"words of each record\)"):
        choose_prompts(pools, "heldout", 1, seed=0)


def made_from(prompt: str, texts: list[str]) -> bool:
    return any(t.startswith(prompt) for t in texts)


@pytest.mark.parametrize("kind,extra", [("txt", []), ("jsonl", ["--prompt-column", "review"]),
                                        ("splits", ["--prompt-words", "4"])])
def test_the_four_stages_run_from_own_prompts_with_heldout_prompts_apart(tmp_path, tiny_policy, tiny_reward, kind,
                                                                         extra):
    texts = records(60)
    source = write_source(tmp_path, kind, texts, column="review" if kind == "jsonl" else "text")
    run = tmp_path / "run"
    assert commands.generate(["--run-dir", str(run), "--policy", str(tiny_policy), "--reward", str(tiny_reward),
                                 "--prompts", str(source), *extra, *GEN_ARGS]) == 0
    assert commands.pairs(["--run-dir", str(run), "--num-pairs", "8"]) == 0
    assert commands.train(["sigmoid", "--run-dir", str(run), "--max-steps", "1", "--batch-size", "4"]) == 0
    assert commands.evaluate(["sigmoid", "--run-dir", str(run), *METRICS_ARGS]) == 0
    record = files.read_yaml(run / layout.GENERATION_CONFIG, "")
    loaded = load_records(SourceSpec(str(source), "review" if kind == "jsonl" else None,
                                     seed=0)) if kind != "splits" else load_records(SourceSpec(str(source)))
    train_prompts = {r["prompt"] for r in files.read_jsonl(run / layout.GENERATIONS, ("prompt",), "")}
    heldout_prompts = {r["prompt"] for r in files.read_jsonl(run / "results" / "sigmoid" / "samples.jsonl",
                                                          ("prompt",), "")}
    assert len(train_prompts) == 4 and len(heldout_prompts) == 4
    assert all(made_from(p, loaded.train) for p in train_prompts)
    assert all(made_from(p, loaded.heldout) for p in heldout_prompts)
    assert not train_prompts & heldout_prompts
    provenance = record["provenance"]["prompts"]
    assert provenance["source"] == str(source) and provenance["records_sha256"] == loaded.provenance["records_sha256"]
    if kind == "splits":
        assert provenance["heldout_split"] == "test" and all(len(p.split()) == 4 for p in train_prompts)
    else:  # a whole record is the prompt by default for a source of one's own
        assert provenance["heldout_fraction"] == 0.2 and train_prompts <= set(texts)
    metrics = json.loads((run / "results" / "sigmoid" / "metrics.json").read_text())
    assert metrics["provenance"]["prompts"]["held_out_of"]["records_sha256"] == provenance["records_sha256"]


def test_a_changed_source_is_refused_at_stage_4(tmp_path, tiny_policy, tiny_reward, capsys):
    source = write_source(tmp_path, "txt", records(40))
    run = tmp_path / "run"
    assert commands.generate(["--run-dir", str(run), "--policy", str(tiny_policy), "--reward", str(tiny_reward),
                                 "--prompts", str(source), *GEN_ARGS]) == 0
    assert commands.pairs(["--run-dir", str(run), "--num-pairs", "8"]) == 0
    assert commands.train(["sigmoid", "--run-dir", str(run), "--max-steps", "1", "--batch-size", "4"]) == 0
    source.write_text(source.read_text() + "one more record of the movie .\n")
    capsys.readouterr()
    assert commands.evaluate(["sigmoid", "--run-dir", str(run), *METRICS_ARGS]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "changed since stage 1" in err and "restore the source" in err
    assert not (run / "results").exists()


def test_the_reference_preset_takes_the_paper_prompts_offline_from_a_local_copy(tmp_path, tiny_policy, tiny_reward):
    """--preset reference: IMDb-shaped prompts, 2-8 token prefixes of the train split, the test split held out."""
    from transformers import AutoTokenizer

    texts = records(80)
    source = write_source(tmp_path, "splits", texts)
    run = tmp_path / "run"
    assert commands.generate(["--run-dir", str(run), "--preset", "reference", "--policy", str(tiny_policy),
                                 "--reward", str(tiny_reward), "--prompts", str(source), *GEN_ARGS]) == 0
    record = files.read_yaml(run / layout.GENERATION_CONFIG, "")
    assert record["prompt_tokens"] == [2, 8] and record["prompt_words"] is None
    assert record["provenance"]["prompts"]["heldout_split"] == "test"
    prefixes = token_prefixes(AutoTokenizer.from_pretrained(tiny_policy), texts[:40], 2, 8)  # the train split
    assert all(row["prompt"] in prefixes for row in files.read_jsonl(run / layout.GENERATIONS, ("prompt",), ""))
    from sentiment_dpo.config import GenerationConfig

    assert GenerationConfig(preset="reference").prompts == "stanfordnlp/imdb"  # the hub dataset when reachable


def bad_source(tmp_path, case: str) -> list[str]:
    if case == "empty file":
        (tmp_path / "empty.txt").write_text("")
        return ["--prompts", str(tmp_path / "empty.txt")]
    if case == "missing column":
        return ["--prompts", str(write_source(tmp_path, "jsonl", records(10)))]  # its column is text
    if case == "missing path":
        return ["--prompts", str(tmp_path / "nowhere.txt")]
    if case == "too few prompts":
        return ["--prompts", str(write_source(tmp_path, "txt", records(4)))]
    if case == "column of a text file":
        return ["--prompts", str(write_source(tmp_path, "txt", records(10))), "--prompt-column", "text"]
    if case == "two rules":
        return ["--prompts", str(write_source(tmp_path, "txt", records(10))), "--prompt-words", "3",
                "--prompt-tokens", "2", "8"]
    if case == "bad token range":
        return ["--prompts", str(write_source(tmp_path, "txt", records(10))), "--prompt-tokens", "8", "2"]
    if case == "split of a file":
        return ["--prompts", str(write_source(tmp_path, "txt", records(10))), "--heldout-split", "test"]
    if case == "fraction without a source":
        return ["--heldout-fraction", "0.3"]
    if case == "hub offline":
        return ["--prompts", "nobody/no-such-dataset"]
    if case == "not a dataset folder":
        (tmp_path / "folder").mkdir()
        return ["--prompts", str(tmp_path / "folder")]
    if case == "empty column":
        return ["--prompts", str(write_source(tmp_path, "jsonl", [""] * 40))]
    if case == "numbers column":
        path = tmp_path / "numbers.jsonl"
        path.write_text("".join(json.dumps({"text": i}) + "\n" for i in range(40)))
        return ["--prompts", str(path)]
    if case == "more words than any sentence":
        return ["--prompt-words", "500"]
    raise AssertionError(case)


@pytest.mark.parametrize("case,says", [
    ("empty file", "holds no records"),
    ("missing column", "has no column 'review' (its columns: id, text); pass --prompt-column NAME"),
    ("missing path", "not found; pass an existing file or folder"),
    ("too few prompts", "asked for 4 training prompts but"),
    ("column of a text file", "remove --prompt-column"),
    ("two rules", "--prompt-words and --prompt-tokens are two rules"),
    ("bad token range", "e.g. --prompt-tokens 2 8"),
    ("split of a file", "it has no splits"),
    ("fraction without a source", "--heldout-fraction is read with --prompts only"),
    ("not a dataset folder", "not one written by save_to_disk"),
    ("hub offline", "--prompts nobody/no-such-dataset is not a local path, and"),
    # the cause and a fix that works, not "use fewer --num-samples"
    ("empty column", "text column is empty in every training record; pass --prompt-column NAME"),
    ("numbers column", "text column holds no text in any training record (numbers or empty values)"),
    ("more words than any sentence", "--prompt-words 500: no training sentence of the built-in Pang & Lee reviews "
                                     "has more words (the longest has"),
])
def test_a_bad_source_is_one_line_exit_2_and_nothing_written(tmp_path, tiny_policy, tiny_reward, capsys, case, says):
    run = tmp_path / "run"
    args = bad_source(tmp_path, case) + (["--prompt-column", "review"] if case == "missing column" else [])
    assert commands.generate(["--run-dir", str(run), "--policy", str(tiny_policy), "--reward", str(tiny_reward),
                                 *args, *GEN_ARGS]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err, err
    assert not (run / "data").exists()


def test_the_pipeline_and_the_sweep_name_the_source_once(tmp_path, tiny_policy, tiny_reward):
    from sentiment_dpo.experiments.sweep import SweepConfig, SweepRunner

    texts = records(60)
    source = write_source(tmp_path, "jsonl", texts, column="review")
    config = tmp_path / "pipeline.yaml"
    config.write_text(json.dumps({
        "losses": ["sigmoid"],
        "generation": {"policy": str(tiny_policy), "reward": str(tiny_reward), "num_samples": 16,
                       "samples_per_prompt": 4, "max_new_tokens": 4, "batch_size": 8},
        "pairs": {"num_pairs": 8}, "training": {"max_steps": 1, "batch_size": 4},
        "metrics": {"num_prompts": 4, "batch_size": 8, "judge": "none", "ceiling_samples": 2}}))
    run = tmp_path / "run"
    assert commands.pipeline(["--config", str(config), "--run-dir", str(run), "--prompts", str(source),
                              "--prompt-column", "review", "--prompt-words", "3"]) == 0
    loaded = load_records(SourceSpec(str(source), "review"))
    heldout = {r["prompt"] for r in files.read_jsonl(run / "results" / "sigmoid" / "samples.jsonl", ("prompt",), "")}
    assert heldout and all(made_from(p, loaded.heldout) and len(p.split()) == 3 for p in heldout)
    assert f"prompts from {source}, the first 3 words of each record" in (run / "SUMMARY.md").read_text()

    sweep_dir = tmp_path / "sweep"
    args = ["--run-dir", str(sweep_dir), "--policy", str(tiny_policy), "--reward", str(tiny_reward), "--judge", "none",
            "--ceiling-samples", "0", "--losses", "sigmoid", "--betas", "0.1", "--seeds", "0", "--num-samples", "16",
            "--samples-per-prompt", "4", "--max-new-tokens", "4", "--num-pairs", "8", "--epochs", "1",
            "--batch-size", "4", "--eval-every", "1", "--eval-prompts", "4", "--eval-batch-size", "8",
            "--prompts", str(source), "--prompt-column", "review"]
    assert commands.sweep(args) == 0
    runner = SweepRunner(SweepConfig(run_dir=str(sweep_dir), policy=str(tiny_policy), reward=str(tiny_reward),
                                     judge="none", ceiling_samples=0, losses=["sigmoid"], betas=[0.1], seeds=[0],
                                     num_samples=16, samples_per_prompt=4, max_new_tokens=4, num_pairs=8,
                                     eval_prompts=4, prompts=str(source), prompt_column="review"))
    assert set(runner.evaluator.settings.prompts) <= set(loaded.heldout)
    assert set(runner.train_prompts) == {r["prompt"] for r in files.read_jsonl(sweep_dir / layout.GENERATIONS,
                                                                               ("prompt",), "")}
    assert set(runner.train_prompts) <= set(loaded.train)


def test_a_relative_source_is_recorded_absolute(tmp_path, monkeypatch, tiny_policy, tiny_reward):
    """Stage 4 reads the source again from stage 1's record, started from wherever the user is."""
    from sentiment_dpo.prompt_source import absolute_source

    write_source(tmp_path, "txt", records(40))
    monkeypatch.chdir(tmp_path)
    assert absolute_source("someone/a-hub-dataset") == "someone/a-hub-dataset"
    assert commands.generate(["--run-dir", "run", "--policy", str(tiny_policy), "--reward", str(tiny_reward),
                              "--prompts", "prompts.txt", *GEN_ARGS]) == 0
    record = files.read_yaml(tmp_path / "run" / layout.GENERATION_CONFIG, "")
    assert record["prompts"] == str(tmp_path.resolve() / "prompts.txt")
