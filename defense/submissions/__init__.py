"""Grading many teams' repaired nets at once (`python3 -m defense grade-submissions DIR`).

discover.py finds the teams, their model files and manifests; identify.py decides, for each
file, which BadNet it repairs, which input scale it takes and whether it is repaired at all;
direct_net.py runs a net straight from its weights (no TensorFlow, no conversion step);
scoring.py scores each GoodNet against BadNet outputs computed once per run; leaderboard.py
writes the tables, the JSON and the plot; cli.py is the command.
"""
