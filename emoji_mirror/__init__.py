"""Emoji Mirror runtime: model registry, preprocessing, checkpoints and the live mirror pipeline."""
