"""The adaptive-attack report: triggers weakened and disguised as an attacker who has read the
README would, against each net's GoodNet (`python3 -m defense attack`)."""
