#!/usr/bin/env python3
"""The default pipeline in miniature, for comparing CPUs byte for byte where a whole run is too slow (under an
emulator): three DPO steps of the embedded policy with transformers' optimizer (fused AdamW) and gradient
clipping, sampling from it, and the embedded reward's logits on a few reviews. Prints one JSON object of hashes.

    python3 studies/cpu_kernels/miniature.py
"""

from __future__ import annotations

import hashlib
import json
import sys

from sentiment_dpo.kernels import in_effect, pin_cpu_kernels

REVIEWS = ["this movie was a wonderful surprise", "dull, long and badly acted", "it has its moments",
           "i laughed and cried", "the plot makes no sense", "a fine cast wasted", "worth every minute", "meh"]


def digest(tensor) -> str:
    return hashlib.sha256(tensor.detach().contiguous().reshape(-1).numpy().tobytes()).hexdigest()[:12]


def main() -> int:
    pin_cpu_kernels()
    import torch
    import torch.nn.functional as F

    from sentiment_dpo.models import load_policy, load_reward

    cpu = torch.device("cpu")
    policy = load_policy("embedded", cpu).model.train()
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1, policy.config.vocab_size, (8, 48), generator=generator)  # rows 0-3 chosen, 4-7 rejected
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-4, fused=True)
    out = {"kernels": in_effect(), "torch CPU capability": torch.backends.cpu.get_cpu_capability()}
    for step in range(3):
        logits = policy(ids).logits[:, :-1]  # (8, 47, vocab)
        # as the pipeline's log-prob head (methods/fast_dpo.py); TRL's own, logits - logsumexp, differentiates
        # through MKL's exp, which no setting makes vendor-neutral but COMPATIBLE
        log_probs = F.log_softmax(logits, -1).gather(2, ids[:, 1:, None])[..., 0]
        margin = log_probs[:4].sum(-1) - log_probs[4:].sum(-1)
        loss = -F.logsigmoid(0.1 * margin).mean()
        loss.backward()
        out[f"step {step} gradient norm"] = repr(float(torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)))
        optimizer.step()
        optimizer.zero_grad()
    out["loss"] = repr(loss.item())
    out["weights"] = digest(torch.cat([p.reshape(-1) for p in policy.parameters()]))
    policy.eval()
    with torch.no_grad():
        torch.manual_seed(0)
        samples = policy.generate(ids[:, :4], max_new_tokens=16, do_sample=True, top_k=0, top_p=1.0,
                                  pad_token_id=policy.config.eos_token_id)
        out["samples"] = digest(samples)
        reward = load_reward("embedded", cpu)
        batch = reward.tokenizer(REVIEWS, return_tensors="pt", padding=True)
        reward_logits = reward.model(**batch).logits
    out["reward logits"] = digest(reward_logits)
    out["first review's p_positive"] = repr(torch.softmax(reward_logits, -1)[0, 1].item())
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
