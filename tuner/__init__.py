"""KerasTuner search over LIMIT's hyperparameters (and the other methods').

``tuner`` imports ``limit_tf``; nothing in ``limit_tf`` imports ``tuner``.
"""
