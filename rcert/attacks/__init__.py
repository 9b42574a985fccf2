"""Attacks: projection onto the threat model's ball and box, objectives of the distortion,
optimisers (PGD, L-BFGS-B), maximum-damage and latent attacks.
"""
