"""The planning floor: the pure planner (plan.py), the ActionTrail event parser (events.py) and the
schedule reader (cadence.py); no SDK, no I/O.
"""
