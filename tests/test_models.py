import pytest

from sentiment_dpo.errors import PipelineError
from sentiment_dpo.models import load_policy, load_reward, positive_label_index, prompt_ids, prompt_text


@pytest.mark.parametrize("id2label, expected", [
    ({0: "NEGATIVE", 1: "POSITIVE"}, 1),
    ({"0": "pos", "1": "neg"}, 0),
    ({0: "negative", 1: "neutral", 2: "positive"}, 2),
])
def test_positive_class_is_found_by_name(id2label, expected):
    assert positive_label_index(id2label) == expected


def test_positive_label_override_and_ambiguity():
    assert positive_label_index({0: "LABEL_0", 1: "LABEL_1"}, "label_1") == 1
    with pytest.raises(PipelineError, match="--positive-label"):
        positive_label_index({0: "LABEL_0", 1: "LABEL_1"})
    with pytest.raises(PipelineError, match="is not a class"):
        positive_label_index({0: "NEGATIVE", 1: "POSITIVE"}, "happy")


def test_tokenizer_without_pad_token_gets_one(tiny_policy):
    import torch

    policy = load_policy(str(tiny_policy), torch.device("cpu"))
    assert policy.tokenizer.pad_token is not None
    assert policy.tokenizer.padding_side == "left"


def test_prompt_text_tokenizes_like_prompt_ids(tiny_policy):
    """TRL tokenizes the prompt text itself: it must see the same ids the sampler used."""
    import torch

    tokenizer = load_policy(str(tiny_policy), torch.device("cpu")).tokenizer
    for prompt in ["the movie was", ""]:
        ids = tokenizer(prompt_text(tokenizer, prompt))["input_ids"]
        assert ids == prompt_ids(tokenizer, prompt)
        assert ids[0] == tokenizer.bos_token_id


def test_unloadable_model_is_a_clear_error(tmp_path):
    import torch

    with pytest.raises(PipelineError, match="cannot load reward"):
        load_reward(str(tmp_path), torch.device("cpu"))


def llama_style_tokenizer(tiny_policy):
    """The tiny policy's BPE with a post-processor that puts BOS in front by itself, as Llama's does."""
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    base = AutoTokenizer.from_pretrained(tiny_policy)
    backend = base.backend_tokenizer
    backend.add_special_tokens(["<s>"])
    bos = backend.token_to_id("<s>")
    backend.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token=base.eos_token)


def test_prompt_text_tokenizes_to_the_sampled_prompt_ids_with_one_bos(tiny_policy):
    from transformers import AutoTokenizer

    from sentiment_dpo.models import adds_bos, prompt_ids, prompt_text

    for tokenizer, self_bos in ((AutoTokenizer.from_pretrained(tiny_policy), False),
                                (llama_style_tokenizer(tiny_policy), True)):
        assert adds_bos(tokenizer) is self_bos
        for prompt in ("the movie was", ""):
            ids = prompt_ids(tokenizer, prompt)
            # TRL's RLOO / GRPO tokenize prompts with special tokens: the same ids, one BOS
            assert tokenizer(prompt_text(tokenizer, prompt))["input_ids"] == ids
            assert ids.count(tokenizer.bos_token_id) == 1
