"""Loading the policy and the reward classifier by folder, hub id, or the name `embedded`.

Any causal LM and any sequence classifier that `transformers` loads is accepted; tokenizers without
a pad token get their EOS (or UNK) token as pad, and the positive class is found by name.
"""

from __future__ import annotations

import json
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import PipelineError

logger = logging.getLogger(__name__)

POSITIVE_NAMES = ("positive", "pos")


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    spec: str  # what the user asked for: a path, a hub id or "embedded"
    source: str  # where it was loaded from


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise PipelineError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu or auto")
    return torch.device(name)


def resolve_source(spec: str, kind: str) -> str:
    """Turn `embedded` (and `smollm2`) into a local folder, building it on first use; other specs pass through."""
    from .embedded import default_models

    if spec == "embedded":
        return str({"policy": default_models.policy_path, "reward": default_models.ensure_reward,
                    "judge": default_models.ensure_judge}[kind]())
    if spec == "smollm2" and kind == "policy":
        return str(default_models.ensure_smollm2())
    return spec


# Stages 3 and 4 take their models from stage 1's record: the fix for one that does not load is there.
RECORDED_MODEL_FIX = ("restore it, or rerun `python3 text_generation.py` with a --policy / --reward that loads "
                      "(e.g. --preset embedded)")


def _load_error(kind: str, spec: str, err: Exception, fix: str | None = None) -> PipelineError:
    """One line for a model that does not load; `fix`: what to do at a stage that takes no model option (the
    model was recorded by an earlier stage), instead of passing another one."""
    if fix is None:
        fix = "pass a local folder with config.json, or a hub id reachable from this machine"
        if not Path(spec).exists() and "/" in spec:
            fix += " (this machine may have no hub access: use the offline default, --preset embedded)"
    if isinstance(err, pickle.UnpicklingError):  # torch's weights-only loader refuses an arbitrary pickle
        what = "its weights are a pickle that torch's safe loader refuses (save them as safetensors)"
    else:
        what = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}" if str(err) else type(err).__name__
    return PipelineError(f"cannot load {kind} {spec!r} ({what}); {fix}")


def prepare_tokenizer(tokenizer, padding_side: str):
    """Give the tokenizer a pad token if it lacks one (GPT-2's has none) and set the padding side."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.unk_token
    if tokenizer.pad_token is None:
        raise PipelineError("the tokenizer has no pad, EOS or UNK token to pad with; use a tokenizer that has one")
    tokenizer.padding_side = padding_side
    return tokenizer


# What the head of each kind of model is called in `config.architectures` (GPT2LMHeadModel, LlamaForCausalLM, ...).
HEADS = {"AutoModelForCausalLM": ("CausalLM", "LMHeadModel"), "AutoModelForSequenceClassification":
         ("SequenceClassification",)}


def check_architecture(config, spec: str, kind: str, auto_class_name: str, fix: str | None = None) -> None:
    """Refuse a model whose saved head is of another kind: a classifier loaded as a policy would get a random LM
    head (and write garbage), a language model loaded as a reward a random classification head."""
    architectures = getattr(config, "architectures", None) or []
    wanted = HEADS[auto_class_name]
    if architectures and not any(part in name for name in architectures for part in wanted):
        expected = "a causal language model" if kind == "policy" else "a sequence classifier"
        name = f"--{kind} {spec}" if fix is None else f"the {kind} {spec}"  # an option, or a recorded model
        fix = fix or ("pass " + ("a causal LM (e.g. --policy embedded)" if kind == "policy"
                                 else f"a sentiment classifier (e.g. --{kind} embedded)"))
        raise PipelineError(f"{name} is a {architectures[0]}, not {expected}; {fix}")


def _from_pretrained(spec: str, kind: str, auto_class_name: str, padding_side: str, fix: str | None = None):
    """(source, model, tokenizer) for a spec, with one clear error whatever goes wrong in loading; `fix` as in
    `_load_error`."""
    import transformers
    from safetensors import SafetensorError

    source = resolve_source(spec, kind)
    try:
        check_architecture(transformers.AutoConfig.from_pretrained(source), spec, kind, auto_class_name, fix)
        tokenizer = transformers.AutoTokenizer.from_pretrained(source)
        model = getattr(transformers, auto_class_name).from_pretrained(source, dtype=torch.float32)
    # SafetensorError: a truncated weights file; UnpicklingError: a pickled .bin the weights-only loader refuses
    except (OSError, ValueError, KeyError, SafetensorError, pickle.UnpicklingError) as err:
        raise _load_error(kind, spec, err, fix) from None
    return source, model, prepare_tokenizer(tokenizer, padding_side)


def load_policy(spec: str, device: torch.device, fix: str | None = None) -> LoadedModel:
    """A causal LM; `fix`: what a failure should tell the user to do, at a stage that takes no model option."""
    # Left padding: batched generation appends new tokens on the right, so prompts must end at the same column.
    source, model, tokenizer = _from_pretrained(spec, "policy", "AutoModelForCausalLM", "left", fix)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return LoadedModel(model.to(device).eval(), tokenizer, spec, source)


def load_reward(spec: str, device: torch.device, kind: str = "reward", fix: str | None = None) -> LoadedModel:
    """A sentiment classifier: the reward (`kind` "reward") or the held-out judge ("judge"); `fix` as in
    `load_policy`."""
    source, model, tokenizer = _from_pretrained(spec, kind, "AutoModelForSequenceClassification", "right", fix)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return LoadedModel(model.to(device).eval(), tokenizer, spec, source)


def load_classifier(spec: str, device: torch.device, kind: str = "reward", positive_label: str | None = None,
                    fix: str | None = None):
    """A sentiment classifier with its positive class found by name (`positive_label` overrides the lookup)."""
    from .scoring import Classifier

    loaded = load_reward(spec, device, kind, fix)
    return Classifier(loaded, positive_label_index(loaded.model.config.id2label, positive_label))


def load_scorer(spec: str, device: torch.device, kind: str = "reward", positive_label: str | None = None,
                fix: str | None = None):
    """The reward or the judge: a user's function (`FILE.py:FUNCTION`, `scoring.RewardFunction`) or a sentiment
    classifier (`scoring.Classifier`)."""
    from .scoring import load_reward_function
    from .user_code import is_function_spec

    if not is_function_spec(spec):
        return load_classifier(spec, device, kind, positive_label, fix)
    if positive_label is not None:
        raise PipelineError(f"--positive-label names a class of a classifier; the {kind} {spec} is a function: "
                            "remove --positive-label")
    return load_reward_function(spec)


def scorer_digest(scorer) -> str:
    """SHA-256 of what a reward or judge computes with: a classifier's weights and tokenizer (`content_digest`), a
    function's file."""
    from .scoring import Classifier

    return content_digest(scorer.model) if isinstance(scorer, Classifier) else scorer.sha256


def positive_label_index(id2label: dict, override: str | None = None) -> int:
    """Index of the positive class, looked up by name in `id2label` (never assumed to be 1)."""
    labels = {int(index): str(name) for index, name in id2label.items()}
    if override is not None:
        matches = [i for i, name in labels.items() if name.lower() == override.lower()]
        if not matches:
            raise PipelineError(f"--positive-label {override!r} is not a class of the reward model "
                                f"(its labels: {', '.join(labels.values())})")
        return matches[0]
    matches = [i for i, name in labels.items() if name.lower() in POSITIVE_NAMES]
    if len(matches) != 1:
        raise PipelineError(f"cannot tell which class of the reward model is positive (its labels: "
                            f"{', '.join(labels.values())}); pass --positive-label NAME")
    return matches[0]


def non_finite_parameters(model) -> list[str]:
    """The names of `model`'s parameters holding a NaN or an infinity."""
    return [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]


def refuse_non_finite_weights(model, name: str, fix: str) -> None:
    """Refuse a model with NaN or infinite weights (a diverged training): it would fail deep inside sampling."""
    bad = non_finite_parameters(model)
    if bad:
        raise PipelineError(f"{name} has non-finite weights in {len(bad)} tensors (e.g. {bad[0]}); {fix}")


def content_digest(loaded: LoadedModel) -> str:
    """SHA-256 of a loaded model's weights (every tensor, by name) and its tokenizer: what a cache of its samples
    or scores is keyed by, so a rebuilt or changed model never meets results of another with the same name."""
    digest = _weights_hash(loaded.model)
    backend = getattr(loaded.tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # a call with truncation or padding switches them on in the backend: its state, not its content
        content = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")}
        digest.update(json.dumps(content, sort_keys=True).encode())
    else:
        digest.update(repr(sorted(loaded.tokenizer.get_vocab().items())).encode())
    return digest.hexdigest()


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of a module's weights: every tensor of its state dict, by name, dtype and shape."""
    return _weights_hash(model).hexdigest()


def _weights_hash(model: torch.nn.Module):
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest


def context_limit(model) -> int | None:
    """How many positions the model handles (None: no fixed limit)."""
    return getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", None)


def prompt_ids(tokenizer, prompt: str) -> list[int]:
    """Token ids a prompt is generated from: BOS (if the tokenizer has one), then the prompt's tokens.

    The BOS token marks the start of a document as in pre-training, and makes the empty prompt
    (unconditional generation) a valid context.
    """
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
    return ([tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []) + ids


def adds_bos(tokenizer) -> bool:
    """Whether the tokenizer puts BOS in front by itself when called with special tokens (Llama-style)."""
    return tokenizer.bos_token_id is not None and tokenizer("a")["input_ids"][:1] == [tokenizer.bos_token_id]


def prompt_text(tokenizer, prompt: str) -> str:
    """The prompt as text for TRL, which tokenizes it itself (with special tokens): the same ids as `prompt_ids`.
    The BOS text is written out only for a tokenizer that does not add BOS by itself, or it would come twice."""
    return prompt if adds_bos(tokenizer) else (tokenizer.bos_token or "") + prompt
