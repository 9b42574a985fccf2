"""Models: the contract every family meets, rcert's own architectures, adapters for foreign
models, training objectives and loops, and the safe checkpoint format.
"""
