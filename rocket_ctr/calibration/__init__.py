"""Calibrated probabilities: the measures (PCOC, ECE, RelaImpr, the downsampling correction),
each tower's intercept, Platt slope and isotonic map, and reliability plots. NumPy only.

May import: ``rocket_ctr.errors``.
"""
