"""Evaluation: score checkpoints and ensembles on every labelled test split, write results/ and the tiers' picks (`python -m training.evaluate`)."""
