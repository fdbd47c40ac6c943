"""Procedural training data and the training scripts for the shipped demo weights.

``python -m backend.train <subcommand>`` runs them; the scripts are part of the product, so a user
with a GPU can train a category of their own with the same commands.
"""
