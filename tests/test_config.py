import pytest

from sentiment_dpo.config import GenerationConfig, PairsConfig, TrainingConfig, make_parser, parse_config
from sentiment_dpo.errors import PipelineError


def parse(cls, argv, positional=None):
    return parse_config(cls, make_parser(cls, "test", positional), argv)


def test_defaults_and_preset_resolution():
    config = parse(GenerationConfig, [])
    assert (config.policy, config.reward, config.num_samples) == ("embedded", "embedded", 1000)
    reference = parse(GenerationConfig, ["--preset", "reference"])
    assert reference.policy == "lvwerra/gpt2-imdb" and reference.reward == "lvwerra/distilbert-imdb"
    mixed = parse(GenerationConfig, ["--preset", "reference", "--reward", "my/classifier"])
    assert (mixed.policy, mixed.reward) == ("lvwerra/gpt2-imdb", "my/classifier")


def test_yaml_sets_options_and_the_command_line_wins(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("num-pairs: 50\nstrategy: best_worst\nseed: 3\n")
    config = parse(PairsConfig, ["--config", str(file), "--seed", "7"])
    assert (config.num_pairs, config.strategy, config.seed) == (50, "best_worst", 7)


def test_positional_loss_and_flags():
    config = parse(TrainingConfig, ["hinge", "--beta", "0.5", "--no-precompute-ref-log-probs"], positional="loss")
    assert (config.loss, config.beta, config.precompute_ref_log_probs) == ("hinge", 0.5, False)


def test_resolved_config_with_provenance_reads_back(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("num_pairs: 5\nprovenance: {generations: data/generations.jsonl}\n")
    assert parse(PairsConfig, ["--config", str(file)]).num_pairs == 5


@pytest.mark.parametrize("argv, message", [
    (["--strategy", "best"], "--strategy 'best' is not one of"),
    (["--num-pairs", "0"], "--num-pairs must be > 0"),
    (["--config", "/nonexistent.yaml"], "not found"),
])
def test_bad_options_are_one_line_errors(argv, message):
    with pytest.raises(PipelineError, match=message):
        parse(PairsConfig, argv)


def test_unknown_yaml_option(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("num_pears: 5\n")
    with pytest.raises(PipelineError, match="unknown option.*num_pears"):
        parse(PairsConfig, ["--config", str(file)])
