"""Fine-Pruning with data: the ranking and the pruning sweep (pruning.py), fine-tuning with
pruned channels held at zero (fine_tuning.py) under random trigger-agnostic edits
(augment.py), one net's repair (repair.py) and the `fine-prune` command (cli.py)."""
