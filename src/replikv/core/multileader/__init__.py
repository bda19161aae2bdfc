"""The multi-leader replica core (issue 10): every node takes writes; ops reach every
node exactly once, in causal order, over a mesh, star or ring (replica.py)."""
