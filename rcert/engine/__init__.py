"""The certification engine: counter-based noise, the exact encoder Jacobian, the Monte
Carlo over encoder noise and :func:`certify`, which turns them into per-input certificates.
"""
