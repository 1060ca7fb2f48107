"""Optimizers that wrap optimizers (Lookahead, the SAM family, EMA, accumulation, clipping).

Nothing is registered here yet: the wrappers issue builds on the base class and fills this package.
"""
