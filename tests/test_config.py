import pytest

from sentiment_dpo.config import GenerationConfig, PairsConfig, TrainingConfig
from sentiment_dpo.config_parser import make_parser, parse_config
from sentiment_dpo.errors import PipelineError


def parse(cls, argv, positional=None):
    return parse_config(cls, make_parser(cls, "test", positional), argv)


def test_defaults_and_preset_resolution():
    config = parse(GenerationConfig, [])
    assert (config.policy, config.reward, config.num_samples) == ("embedded", "embedded", 8000)
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


def test_batch_size_default_counts_pairs_offline_and_completions_online():
    sizes = {loss: parse(TrainingConfig, [loss], positional="loss").batch_size
             for loss in ("sigmoid", "slic", "rloo", "grpo", "online_dpo")}
    assert sizes == {"sigmoid": 448, "slic": 448, "rloo": 16, "grpo": 16, "online_dpo": 16}
    assert parse(TrainingConfig, ["rloo", "--batch-size", "64"], positional="loss").batch_size == 64


def test_resolved_config_with_provenance_reads_back(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("num_pairs: 5\nprovenance: {generations: data/generations.jsonl}\n")
    assert parse(PairsConfig, ["--config", str(file)]).num_pairs == 5


@pytest.mark.parametrize("argv, message", [
    (["--strategy", "best"], "--strategy 'best' is not one of"),
    (["--num-pairs", "-1"], "--num-pairs must be a finite number >= 0"),
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


@pytest.mark.parametrize("cls, argv, message", [
    (TrainingConfig, ["--beta", "nan"], "--beta must be a finite number > 0, got nan"),
    (TrainingConfig, ["--learning-rate", "inf"], "--learning-rate must be a finite number > 0, got inf"),
    (TrainingConfig, ["--warmup-ratio", "-1"], "--warmup-ratio must be a finite number >= 0"),
    (TrainingConfig, ["--warmup-ratio", "1.5"], r"--warmup-ratio must be in \[0, 1\), got 1.5; e.g. 0.1"),
    (TrainingConfig, ["--max-steps", "0"], "--max-steps must be -1"),
    (TrainingConfig, ["--loss", "ipo", "--soft-labels"], "--soft-labels does nothing for 'ipo' .soft labels are "
                                                         "defined for the sigmoid loss only.: remove it"),
    (TrainingConfig, ["--loss", "rloo", "--group-by-prompt"], "--group-by-prompt does nothing for 'rloo'"),
    (TrainingConfig, ["--loss", "grpo", "--no-group-by-prompt"], "--group-by-prompt does nothing for 'grpo'"),
    # options the chosen method does not read: refused, never ignored
    (TrainingConfig, ["--loss", "sigmoid", "--label-smoothing", "0.1"],
     "--label-smoothing does nothing for 'sigmoid' .TRL 1.16.0 reads it only for robust, exo_pair, aot, aot_unpaired"),
    (TrainingConfig, ["--loss", "hinge", "--label-smoothing", "0"], "--label-smoothing does nothing for 'hinge'"),
    (TrainingConfig, ["--loss", "sigmoid", "--slic-lambda", "0.5"], "--slic-lambda does nothing for 'sigmoid'"),
    (TrainingConfig, ["--loss", "online_dpo", "--num-generations", "4"],
     "--num-generations does nothing for 'online_dpo'"),
    (TrainingConfig, ["--loss", "hinge", "--no-soft-labels"], "--soft-labels does nothing for 'hinge'"),
    (TrainingConfig, ["--loss", "sft", "--beta", "0.1"], "--beta does nothing for 'sft' .sft .Preferred-FT. is"),
    (TrainingConfig, ["--loss", "rloo", "--recipe", "token-bias"], "--recipe does nothing for 'rloo'"),
    (TrainingConfig, ["--loss", "slic", "--no-precompute-ref-log-probs"],
     "--precompute-ref-log-probs does nothing for 'slic' .slic has no reference"),
    (TrainingConfig, ["--loss", "sigmoid", "--lora-alpha", "8"], "--lora-alpha scales LoRA adapters, and this run "
                                                                  "trains none: pass --lora-rank R"),
    (TrainingConfig, ["--loss", "sigmoid", "--recipe", "bias"], "--recipe 'bias' is not one of: standard, token-bias"),
    (TrainingConfig, ["--recipe", "token-bias", "--lora-rank", "4"], "pass --no-logit-bias to train LoRA"),
    (TrainingConfig, ["--bias-start", "reward"], "--bias-start says where a trained logit bias starts, and this run "
                                                  "trains none"),
    (GenerationConfig, ["--temperature", "nan"], "--temperature must be a finite number > 0"),
    (GenerationConfig, ["--seed", "-1"], "--seed must be a finite number >= 0"),
    (GenerationConfig, ["--device", "tpu"], "--device 'tpu' is not one of: auto, cpu, cuda"),
])
def test_non_finite_and_out_of_range_options_are_refused(cls, argv, message):
    with pytest.raises(PipelineError, match=message):
        parse(cls, argv)


@pytest.mark.parametrize("text, message", [
    ("num_samples: 80.5\n", "num_samples must be a whole number, got 80.5"),
    ("seed: abc\n", "seed must be a whole number, got 'abc'"),
    ("batch_size: true\n", "batch_size must be a whole number, got True"),
    ("temperature: [1]\n", "temperature must be a number, got \\[1\\]"),
])
def test_wrong_types_in_a_config_file_name_the_option_and_the_file(tmp_path, text, message):
    file = tmp_path / "c.yaml"
    file.write_text(text)
    with pytest.raises(PipelineError, match=f"--config {file}: {message}"):
        parse(GenerationConfig, ["--config", str(file)])


def test_yaml_exponent_without_a_dot_is_a_number(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("learning_rate: 1e-4\n")
    assert parse(TrainingConfig, ["--config", str(file)]).learning_rate == 1e-4  # YAML reads 1e-4 as a string


def test_unreadable_config_files_are_one_line_errors(tmp_path):
    with pytest.raises(PipelineError, match="is not a file"):
        parse(PairsConfig, ["--config", str(tmp_path)])
    file = tmp_path / "c.yaml"
    file.write_bytes(b"seed: \xff\xfe\n")
    with pytest.raises(PipelineError, match="is not UTF-8 text"):
        parse(PairsConfig, ["--config", str(file)])
