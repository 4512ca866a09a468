"""keras.optimizers.Muon as a chain of gradtx primitives."""

from __future__ import annotations

import re
from typing import Any

import jax

from ..._base import static, Struct
from ..._combine import Chain, chain, identity, recipe
from ..._matrix import scale_by_muon, scale_by_shape
from ..._regularize import add_decayed_weights
from ..._scale import scale, scale_by_learning_rate
from ..._wrappers import partition
from ._optimizers import _adam_scaling, _apply
from ._wrappers import documents_base_options, weight_decay_mask

# Keras normalises by ||X||_F + 1e-7 before Newton-Schulz, whatever its `epsilon` (Adam's).
NS_EPSILON = 1e-7


class KerasMuonLabels(Struct):
    """Labels 'muon' or 'adam' per leaf, by Keras's rules on the leaf's key path."""

    exclude_layers: tuple[str, ...] = static(())
    exclude_embeddings: bool = static(True)

    def __call__(self, params: Any) -> Any:
        flat, treedef = jax.tree_util.tree_flatten_with_path(params)

        def label(path, leaf):
            where = jax.tree_util.keystr(path)
            adam = (
                len(getattr(leaf, "shape", ())) != 2
                or (self.exclude_embeddings and "embedding" in where.lower())
                or any(re.search(pattern, where) for pattern in self.exclude_layers)
            )
            return "adam" if adam else "muon"

        return treedef.unflatten([label(path, leaf) for path, leaf in flat])


@recipe
@documents_base_options
def muon(
    learning_rate: Any = 0.001,
    adam_beta_1: float = 0.9,
    adam_beta_2: float = 0.999,
    adam_weight_decay: float | None = 0.004,
    epsilon: float = 1e-7,
    weight_decay: float | None = 0.004,
    clipnorm: float | None = None,
    clipvalue: float | None = None,
    global_clipnorm: float | None = None,
    use_ema: bool = False,
    ema_momentum: float = 0.99,
    ema_overwrite_frequency: int | None = None,
    loss_scale_factor: float | None = None,
    gradient_accumulation_steps: int | None = None,
    name: str | None = None,
    exclude_layers: list[str] | None = None,
    exclude_embeddings: bool = True,
    muon_a: float = 3.4445,
    muon_b: float = -4.7750,
    muon_c: float = 2.0315,
    adam_lr_ratio: float = 1,
    momentum: float = 0.95,
    ns_steps: int = 5,
    nesterov: bool = True,
    rms_rate: float | None = 0.2,
    *,
    exclude_from_weight_decay: list[str] | None = None,
) -> Chain:
    """``keras.optimizers.Muon``: Newton-Schulz on matrices, Keras's Adam on the rest.

    Update rule (Keras 3), for the leaves Muon takes::

        p' = p - p * weight_decay * lr_t                    (the decay comes first)
        m_t = momentum m_{t-1} + g;   M = g + momentum m_t (nesterov) or m_t
        X = M / (||M||_F + 1e-7);   X <- a X + (b A + c A A) X, A = X X^T   (ns_steps times,
                                                             on the wide orientation)
        p <- p' - lr_t * rms_rate * sqrt(max(rows, cols)) * X    (no factor if rms_rate None)

    and for the others, ``adam_weight_decay`` in place of ``weight_decay``::

        p <- p' - lr_t * adam_lr_ratio * sqrt(1 - b2**t) / (1 - b1**t) m_t / (sqrt(v_t) + epsilon)

    A leaf goes to Adam if its rank is not 2, if ``exclude_embeddings`` and its
    path contains "embedding" (any case), or if a regular expression of
    ``exclude_layers`` is found in its path (``re.search``). The path is the
    leaf's key path in the params, ``jax.tree_util.keystr`` (``"['dense']['kernel']"``),
    where Keras uses ``variable.path`` (``"dense/kernel"``): write patterns that
    match both, not anchored ones. The weight decay takes the learning rate
    without ``adam_lr_ratio``, as in Keras. ``exclude_from_weight_decay`` (Keras's
    ``var_names``) spares the leaves it names from both decays.

    Built from ``scale_by_muon(debias=False)``, whose momentum is ``(1 - momentum)``
    times Keras's; Newton-Schulz ignores that factor given the epsilon
    ``1e-7 * (1 - momentum)``. So ``momentum`` must be in [0, 1) (Keras also
    accepts 1, a plain sum of gradients). ``epsilon`` is Adam's only.

    Args:
        learning_rate: a number or a gradtx schedule, >= 0. Default 0.001.
        adam_beta_1: in [0, 1). Default 0.9.
        adam_beta_2: in [0, 1). Default 0.999.
        adam_weight_decay: the Adam group's decay, >= 0, or None. Default 0.004.
        epsilon: Adam's, > 0. Default 1e-7.
        weight_decay: the Muon group's decay, >= 0, or None. Default 0.004.
        exclude_layers: regular expressions of paths sent to Adam. Default None.
        exclude_embeddings: send paths containing "embedding" to Adam. Default True.
        muon_a, muon_b, muon_c: the Newton-Schulz coefficients. Default 3.4445,
            -4.7750, 2.0315.
        adam_lr_ratio: the Adam group's rate multiplier. Default 1.
        momentum: in [0, 1). Default 0.95.
        ns_steps: Newton-Schulz steps, an integer >= 0. Default 5.
        nesterov: Nesterov momentum. Default True.
        rms_rate: the RMS the step is matched to, or None. Default 0.2.
        <Keras's base options>

    Reference: Keras 3.15, ``keras.optimizers.Muon``; Jordan et al., *Muon: An optimizer
    for hidden layers in neural networks* (2024), kellerjordan.github.io/posts/muon.

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx.compat import keras
    >>> tx = keras.muon(learning_rate=0.1)
    >>> params = {"w": jnp.ones((2, 2))}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # keras.optimizers.Muon gives the same
    ...     updates, state = tx.update({"w": jnp.array([[1.0, 2.0], [3.0, 4.0]])}, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> [round(float(v), 4) for v in params["w"].ravel()]
    [1.0377, 0.9525, 0.9573, 0.9845]
    """
    del name
    if not 0 <= momentum < 1:
        raise ValueError(
            f"keras.muon(momentum={momentum!r}): momentum must be in [0, 1) here "
            "(gradtx's Muon momentum is an average, momentum = 1 would freeze it)"
        )
    exclude_layers = tuple(exclude_layers or ())
    for pattern in exclude_layers:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(
                f"keras.muon(exclude_layers={list(exclude_layers)!r}): {pattern!r} is not a "
                f"regular expression ({error})"
            ) from None
    # Keras skips the excluded variables before choosing their group's decay.
    decays = weight_decay_mask("muon", exclude_from_weight_decay)
    matrices = chain(
        scale_by_muon(
            (muon_a, muon_b, muon_c),
            ns_steps,
            beta=momentum,
            eps=NS_EPSILON * (1 - momentum),
            nesterov=nesterov,
            debias=False,
        ),
        identity() if rms_rate is None else scale_by_shape(consistent_rms=rms_rate),
        add_decayed_weights(weight_decay, decays) if weight_decay else identity(),
    )
    others = chain(
        _adam_scaling(adam_beta_1, adam_beta_2, epsilon, amsgrad=False),
        scale(adam_lr_ratio),
        add_decayed_weights(adam_weight_decay, decays) if adam_weight_decay else identity(),
    )
    labels = KerasMuonLabels(
        exclude_layers=exclude_layers, exclude_embeddings=bool(exclude_embeddings)
    )
    # One rate after the groups (readable in the state); the decays sit before it.
    step = [
        partition({"muon": matrices, "adam": others}, labels),
        scale_by_learning_rate(learning_rate),
    ]
    return _apply("muon", step, locals(), decay="inside")
