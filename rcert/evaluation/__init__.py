"""Certificates against attacks: the empirical margin, fixed-direction curves and verdicts."""
