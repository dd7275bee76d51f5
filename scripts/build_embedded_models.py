#!/usr/bin/env python3
"""Build (or rebuild) the embedded offline default models and print their quality.

    python3 scripts/build_embedded_models.py            # measure the committed models
    python3 scripts/build_embedded_models.py --reward   # re-train the committed reward adapter (about 8 min)
    python3 scripts/build_embedded_models.py --judge    # re-train the committed judge adapter (about 10 min)
    python3 scripts/build_embedded_models.py --policy   # re-train the committed policy (about 30 min on 2 cores)
    python3 scripts/build_embedded_models.py --ceiling  # re-draw the default run's committed ceiling (about 7 min)

Re-draw the ceiling after changing the policy, the reward, the judge, the default prompts, stage 4's defaults, a
library version or the package's: a run is served the committed ceiling only while its key matches, which holds
the kernels too (a machine whose kernels differ from the one that drew it draws its own once;
tests/test_shipped_ceiling.py).
"""

import argparse
import sys



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", action="store_true", help="re-train the policy into sentiment_dpo/embedded/policy")
    parser.add_argument("--reward", action="store_true",
                        help="re-train the reward's adapter into sentiment_dpo/embedded/reward")
    parser.add_argument("--judge", action="store_true",
                        help="re-train the held-out judge's adapter into sentiment_dpo/embedded/judge")
    parser.add_argument("--ceiling", action="store_true",
                        help="re-draw the default run's ceiling into sentiment_dpo/embedded/ceiling (after the others)")
    parser.add_argument("--bitwise", action="store_true", help="build on the kernels of a --bitwise run")
    args = parser.parse_args(argv)

    import torch

    from sentiment_dpo import files
    from sentiment_dpo.embedded import default_models
    from sentiment_dpo.cli import setup_logging
    from sentiment_dpo.kernels import use_bitwise_kernels
    from sentiment_dpo.embedded.corpus import load_corpus
    from sentiment_dpo.errors import PipelineError
    from sentiment_dpo.models import load_policy, load_reward, positive_label_index
    from sentiment_dpo.embedded.policy_pretraining import (PolicyPretrainingConfig, perplexity, pretrain_policy,
                                                           token_stream)
    from sentiment_dpo.embedded.reward_pretraining import accuracy

    setup_logging()
    try:
        if args.bitwise:
            use_bitwise_kernels()
        corpus = load_corpus()
        if args.policy:  # staged, so an interrupted build leaves the committed policy intact
            staging = files.make_staging_dir(default_models.POLICY_DIR)
            quality = pretrain_policy([r.text for r in corpus.train_reviews], [r.text for r in corpus.heldout_reviews],
                                      staging, PolicyPretrainingConfig())
            files.write_json(staging / default_models.QUALITY_FILE, quality)
            files.replace_dir_atomic(staging, default_models.POLICY_DIR)
        if args.reward:
            default_models.build_reward()
        if args.judge:
            default_models.build_judge()
        device = torch.device("cpu")
        if args.ceiling:
            from sentiment_dpo.evaluation import ceiling_samples
            from sentiment_dpo.config import MetricsConfig
            from sentiment_dpo.stages.evaluate import default_evaluator

            evaluator = default_evaluator(device)
            rows = ceiling_samples.draw(evaluator, MetricsConfig().ceiling_samples)
            ceiling_samples.ship(evaluator, rows)
        policy = load_policy("embedded", device)
        stream = token_stream(policy.tokenizer, [r.text for r in corpus.heldout_reviews])
        ppl = perplexity(policy.model, stream, policy.model.config.n_positions)
        reward = load_reward("embedded", device)
        assert positive_label_index(reward.model.config.id2label) == 1
        acc = accuracy(reward.model, reward.tokenizer, corpus.heldout_sentences, max_length=64)
        load_reward("embedded", device, kind="judge")  # merged on first use
        judge = default_models.quality("judge")
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    params = sum(p.numel() for p in policy.model.parameters())
    print(f"embedded policy: {params / 1e6:.1f}M parameters, vocabulary {len(policy.tokenizer)}, "
          f"held-out review perplexity {ppl:.1f} ({len(stream)} tokens)")
    print(f"embedded reward: held-out sentence accuracy {acc:.3f} ({len(corpus.heldout_sentences)} sentences)")
    print(f"embedded judge: held-out review-window accuracy {judge['heldout_window_accuracy']:.3f} "
          f"({judge['heldout_windows']} windows), held-out sentence accuracy {judge['heldout_sentence_accuracy']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
