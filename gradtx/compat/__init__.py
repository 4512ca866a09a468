"""Exact ports of other frameworks' optimizers: ``compat.pytorch`` and ``compat.keras``."""

from . import keras as keras
from . import pytorch as pytorch
