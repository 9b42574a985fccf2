"""Statistics of the certificates: binomial confidence bounds and order statistics, the
Theorem 1 family of margin formulas, bootstrap intervals, and dataset-wide summaries. Plain
numpy; no torch.
"""
