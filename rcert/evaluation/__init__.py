"""Certificates against attacks (the empirical margin, fixed-direction curves, verdicts), and
the measures of Willetts et al.: targeted-attack metrics, posterior measures, downstream
classifiers."""
