"""Keras 3's optimizers, reproduced exactly as chains of gradtx primitives.

Each function is the ``keras.optimizers`` class name lowercased, with Keras's
keyword names, defaults and semantics (verified against Keras 3.15 in
float64, see ``tests/reference``)::

    keras.optimizers.Adam(learning_rate=1e-3, global_clipnorm=1.0)
    gradtx.compat.keras.adam(learning_rate=1e-3, global_clipnorm=1.0)

What every Keras optimizer shares, in Keras's order: the gradient is clipped
(``clipnorm`` per variable, or ``global_clipnorm``, or ``clipvalue``; at most
one may be set), then ``weight_decay`` decays the variables directly
(``p -= p * wd * lr``), then the optimizer's own step is applied.
``learning_rate`` may be a gradtx schedule, evaluated at the iteration count
before the step (as Keras does with a ``LearningRateSchedule``). The base
options ``use_ema``, ``ema_momentum``, ``ema_overwrite_frequency``,
``loss_scale_factor`` and ``gradient_accumulation_steps`` work as in Keras (one
shared wrapper, ``_wrappers.with_base_options``); a schedule with
``gradient_accumulation_steps`` is evaluated at Keras's raw call count.
``exclude_from_weight_decay`` (a keyword here, Keras's ``var_names``: regular
expressions searched in each leaf's name, the last key of its path) skips the decay
on those leaves.

Beyond the optimizers: ``schedules`` has every ``keras.optimizers.schedules``
class, snake_case (``schedules.cosine_decay_restarts(...)``);
``loss_scale_optimizer`` (with ``scale_loss``) is ``LossScaleOptimizer``'s
dynamic loss scaling; ``optimizer_map`` and ``multi_optimizer`` are
``OptimizerMap`` and ``MultiOptimizer`` on ``gradtx.partition``, matching
parameter paths as Keras matches ``variable.path``.
"""

from . import schedules as schedules
from ._adafactor import adafactor as adafactor
from ._layerwise import lamb as lamb
from ._muon import muon as muon
from ._optimizers import adadelta as adadelta
from ._optimizers import adagrad as adagrad
from ._optimizers import adam as adam
from ._optimizers import adamax as adamax
from ._optimizers import adamw as adamw
from ._optimizers import ftrl as ftrl
from ._optimizers import lion as lion
from ._optimizers import nadam as nadam
from ._optimizers import rmsprop as rmsprop
from ._optimizers import sgd as sgd
from ._schedule_free import schedule_free_adamw as schedule_free_adamw
from ._wrappers import loss_scale_optimizer as loss_scale_optimizer
from ._wrappers import multi_optimizer as multi_optimizer
from ._wrappers import optimizer_map as optimizer_map
from ._wrappers import scale_loss as scale_loss
