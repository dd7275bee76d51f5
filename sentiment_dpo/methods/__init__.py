"""The training methods: which exist and what each reads (`registry.py`), and how the ones that need more than a
TRL trainer train (the fast DPO head, online RL, the token-bias recipe's logit bias and its start, the model card)."""
