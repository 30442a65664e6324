"""A generated CSAW world: drawn faces, poisoned copies, trained BadNets, written in the
competition's layout, so every command can run end to end on known ground truth.

Only this subpackage knows the triggers; the defense (pruning, fine-tuning, GoodNet) never
imports it.
"""
