"""The GoodNet comparator (goodnet.py) and the second opinions it may consult on a suspected
label: the sibling BadNets (siblings.py), the witness trained from the validation faces
(witness.py) and the blend test (blend_test.py)."""
