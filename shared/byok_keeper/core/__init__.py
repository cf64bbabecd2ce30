"""The core floor: Deps built once (deps.py), settings and targets, and the paths that act on keys:
re-establish, import-then-verify, sweep and its appliers, enrollment, many targets.
"""
