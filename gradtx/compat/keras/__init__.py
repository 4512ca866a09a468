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
before the step (as Keras does with a ``LearningRateSchedule``). ``use_ema``,
``loss_scale_factor`` and ``gradient_accumulation_steps`` are not supported
here (see ``gradtx``'s own wrappers) and raise an error when set.
"""

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
