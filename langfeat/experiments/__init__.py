"""Experiments over a feature set: language identification (classify), perplexity under steering and
ablation (ppl), steered generation (generate) and text inspection (check)."""
