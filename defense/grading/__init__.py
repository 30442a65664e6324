"""Scoring GoodNets on competition HDF5 sets: one net on the sets one names (evaluate.py), every
net of a root on its test sets (grade.py), where the clean faces are lost (clean_losses.py), and
warnings for sets that would score silently wrong (plausibility.py)."""
