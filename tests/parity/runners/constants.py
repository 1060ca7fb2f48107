"""Parity rows for group B Adam-like optimizers: AdaGC, Adalite, AdamC, AdamG, AdaShift, AdaSmooth, AdaTAM, Aida,
Amos, AvaGrad (all against pytorch_optimizer 4.1.0).
"""

from __future__ import annotations

WD = {"weight_decay": 0.1}
