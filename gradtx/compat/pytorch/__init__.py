"""PyTorch's ``torch.optim`` optimizers, reproduced exactly as chains of gradtx primitives.

Each function is the ``torch.optim`` class name lowercased, takes torch's
keyword names and defaults, and reproduces torch 2.x's single-tensor update
(verified against torch 2.13 in float64, see ``tests/reference``)::

    torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
    gradtx.compat.pytorch.adamw(lr=3e-4, weight_decay=0.1)

``lr`` may be a gradtx schedule: ``schedule(t)`` is the rate of step ``t``
(0-based), which is what calling ``scheduler.step()`` after every
``optimizer.step()`` gives in torch. The performance flags ``foreach``,
``fused``, ``capturable`` and ``differentiable`` change no numbers and are
accepted and ignored.

Beyond the optimizers: ``lr_scheduler`` has every ``torch.optim.lr_scheduler`` class,
snake_case (``lr_scheduler.one_cycle_lr(...)``), as gradtx schedules
(``reduce_lr_on_plateau`` is a transform driven by ``value=``); ``swa_utils`` has
``averaged_model``, ``swalr`` and ``update_bn``; ``sparse_adam`` is ``torch.optim.SparseAdam``
on dense gradients whose absent rows are zero; ``clip_grad_norm`` and ``clip_grad_value``
are ``torch.nn.utils.clip_grad_norm_`` and ``clip_grad_value_`` as transforms, first in a
``gradtx.chain``.
"""

from . import lr_scheduler as lr_scheduler
from . import swa_utils as swa_utils
from ._adafactor import adafactor as adafactor
from ._adahessian import adahessian as adahessian
from ._clip import clip_grad_norm as clip_grad_norm
from ._clip import clip_grad_value as clip_grad_value
from ._laprop import laprop as laprop
from ._lbfgs import lbfgs as lbfgs
from ._muon import muon as muon
from ._optim import adadelta as adadelta
from ._optim import adagrad as adagrad
from ._optim import adam as adam
from ._optim import adamax as adamax
from ._optim import adamw as adamw
from ._optim import asgd as asgd
from ._optim import nadam as nadam
from ._optim import radam as radam
from ._optim import rmsprop as rmsprop
from ._optim import rprop as rprop
from ._optim import sgd as sgd
from ._parameter_free import dadapt_adagrad as dadapt_adagrad
from ._parameter_free import dadapt_adam as dadapt_adam
from ._parameter_free import dadapt_sgd as dadapt_sgd
from ._parameter_free import prodigy as prodigy
from ._schedule_free import adamw_schedule_free as adamw_schedule_free
from ._schedule_free import radam_schedule_free as radam_schedule_free
from ._schedule_free import sgd_schedule_free as sgd_schedule_free
from ._sparse_adam import sparse_adam as sparse_adam
