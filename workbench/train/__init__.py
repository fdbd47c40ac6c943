"""The training scripts for the shipped demo weights, on the procedural data of ``workbench.data``.

``python -m workbench.train <subcommand>`` runs them; the scripts are part of the product, so a user
with a GPU can train a category of their own with the same commands.
"""
