"""Attacks: projection onto the threat model's ball and box, objectives of the distortion,
optimisers (PGD, L-BFGS-B, the batched box L-BFGS), maximum-damage and latent attacks, and
the targeted attacks of Willetts et al.
"""
