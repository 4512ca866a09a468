"""The registry of named optimizers: family, paper, update rule, a working example, anchors.

One entry per named optimizer of ``gradtx`` and per optimizer port of
``gradtx.compat.pytorch`` and ``gradtx.compat.keras`` (a port names the entry it
ports). The documentation pages (``docs/_ext/optimizer_pages.py``) and
``tests/test_catalog.py`` read it; adding an optimizer is its module code plus
one entry here.

``anchors`` are the columns of the README's fidelity table
(``benchmarks/fidelity.py``) that measure this function: a core entry's row
in the optax, pytorch-optimizer and paper-oracle columns, a port's in its
framework's or its authors' package's.
"""

# ruff: noqa: E501
# (the update rules are LaTeX, one equation to a line.)

from __future__ import annotations

from collections.abc import Callable, Mapping
import dataclasses
import importlib
import types
from typing import Any

#: Family key -> the gallery's heading, in the gallery's order.
FAMILIES: Mapping[str, str] = types.MappingProxyType(
    {
        "momentum": "Gradient descent and momentum",
        "adaptive": "Per-coordinate adaptive (Adagrad, RMSprop)",
        "adam": "Adam family",
        "sign": "Sign-based",
        "layerwise": "Layer-wise (trust ratio)",
        "factored": "Factored second moments",
        "matrix": "Matrix (orthogonalised)",
        "kronecker": "Kronecker (Shampoo)",
        "curvature": "Curvature (second-order)",
        "line_search": "Line search and quasi-Newton",
        "parameter_free": "Parameter-free",
        "schedule_free": "Schedule-free and averaging",
        "gradient_free": "Gradient-free (evolution, swarms, annealing)",
    }
)

#: The fidelity table's columns (``benchmarks/fidelity.py``'s COLUMNS).
ANCHORS = ("PyTorch", "Keras", "optax", "authors' package", "pytorch-optimizer", "paper oracle")

#: Keyword arguments an optimizer's ``update`` may need beyond ``(updates, state)``.
NEEDS = ("params", "value", "grad", "value_fn")


@dataclasses.dataclass(frozen=True)
class Paper:
    """A paper or other primary reference."""

    authors: str
    title: str
    year: int
    url: str
    venue: str = ""


@dataclasses.dataclass(frozen=True)
class Entry:
    """One named optimizer.

    ``name`` is ``gradtx``'s attribute (``"adam"``) or the port's dotted path
    below ``gradtx`` (``"compat.pytorch.adam"``); ``rule`` is LaTeX, lines
    separated by ``\\\\``; ``example`` builds it; ``needs`` are the keywords its
    ``update`` needs (from :data:`NEEDS`); ``ports`` is the core entry a port
    reproduces (None for a port with no core namesake).
    """

    name: str
    family: str
    summary: str
    rule: str
    papers: tuple[Paper, ...]
    example: Mapping[str, Any] = dataclasses.field(default_factory=dict, hash=False)
    needs: tuple[str, ...] = ("params",)
    anchors: tuple[str, ...] = ("optax", "pytorch-optimizer", "paper oracle")
    ports: str | None = None
    matrix_params: bool = False  # takes 2-D leaves only: the example's params are matrices

    @property
    def framework(self) -> str:
        """ "gradtx", "pytorch" or "keras"."""
        return self.name.split(".")[1] if self.name.startswith("compat.") else "gradtx"

    @property
    def short_name(self) -> str:
        """The function's own name, as the fidelity table's row."""
        return self.name.rsplit(".", 1)[-1]

    @property
    def slug(self) -> str:
        """A file name: ``adam``, ``pytorch_adam``."""
        return self.name.removeprefix("compat.").replace(".", "_")

    @property
    def qualname(self) -> str:
        return f"gradtx.{self.name}"

    @property
    def factory(self) -> Callable[..., Any]:
        module, _, attr = self.qualname.rpartition(".")
        return getattr(importlib.import_module(module), attr)

    @property
    def example_source(self) -> str:
        """The example as code: ``gradtx.adam(learning_rate=0.001)``."""
        arguments = ", ".join(
            f"{k}={v if isinstance(v, Code) else repr(v)}" for k, v in self.example.items()
        )
        return f"{self.qualname}({arguments})"

    def build(self) -> Any:
        """The optimizer of the example."""
        gradtx = importlib.import_module("gradtx")
        kwargs = {
            k: eval(v, {"gradtx": gradtx}) if isinstance(v, Code) else v  # noqa: S307
            for k, v in self.example.items()
        }
        return self.factory(**kwargs)


class Code(str):
    """An example argument written as Python source, evaluated with ``gradtx`` in scope."""


def _paper(authors, title, year, url, venue=""):
    return Paper(authors, title, year, url, venue)


# Papers cited by more than one entry.
ROBBINS_MONRO = _paper(
    "Robbins, Monro",
    "A Stochastic Approximation Method",
    1951,
    "https://doi.org/10.1214/aoms/1177729586",
    "Annals of Mathematical Statistics",
)
POLYAK_1964 = _paper(
    "Polyak",
    "Some methods of speeding up the convergence of iteration methods",
    1964,
    "https://doi.org/10.1016/0041-5553(64)90137-5",
    "USSR Computational Mathematics and Mathematical Physics",
)
SUTSKEVER = _paper(
    "Sutskever, Martens, Dahl, Hinton",
    "On the importance of initialization and momentum in deep learning",
    2013,
    "https://proceedings.mlr.press/v28/sutskever13.html",
    "ICML",
)
DUCHI = _paper(
    "Duchi, Hazan, Singer",
    "Adaptive Subgradient Methods for Online Learning and Stochastic Optimization",
    2011,
    "https://jmlr.org/papers/v12/duchi11a.html",
    "JMLR",
)
HINTON = _paper(
    "Hinton, Srivastava, Swersky",
    "Neural Networks for Machine Learning, Lecture 6e: rmsprop",
    2012,
    "https://www.cs.toronto.edu/~tijmen/csc321/slides/lecture_slides_lec6.pdf",
    "lecture notes",
)
GRAVES = _paper(
    "Graves",
    "Generating Sequences With Recurrent Neural Networks",
    2013,
    "https://arxiv.org/abs/1308.0850",
)
ZEILER = _paper(
    "Zeiler", "ADADELTA: An Adaptive Learning Rate Method", 2012, "https://arxiv.org/abs/1212.5701"
)
KINGMA_BA = _paper(
    "Kingma, Ba",
    "Adam: A Method for Stochastic Optimization",
    2014,
    "https://arxiv.org/abs/1412.6980",
    "ICLR 2015",
)
LOSHCHILOV = _paper(
    "Loshchilov, Hutter",
    "Decoupled Weight Decay Regularization",
    2017,
    "https://arxiv.org/abs/1711.05101",
    "ICLR 2019",
)
DOZAT = _paper(
    "Dozat",
    "Incorporating Nesterov Momentum into Adam",
    2016,
    "https://openreview.net/forum?id=OM0jvwB8jIp57ZJjtNEZ",
    "ICLR 2016 workshop",
)
REDDI = _paper(
    "Reddi, Kale, Kumar",
    "On the Convergence of Adam and Beyond",
    2018,
    "https://openreview.net/forum?id=ryQu7f-RZ",
    "ICLR",
)
LIU_RADAM = _paper(
    "Liu, Jiang, He, Chen, Liu, Gao, Han",
    "On the Variance of the Adaptive Learning Rate and Beyond",
    2019,
    "https://arxiv.org/abs/1908.03265",
    "ICLR 2020",
)
RIEDMILLER = _paper(
    "Riedmiller, Braun",
    "A Direct Adaptive Method for Faster Backpropagation Learning: The RPROP Algorithm",
    1993,
    "https://doi.org/10.1109/ICNN.1993.298623",
    "IEEE ICNN",
)
SIGNSGD = _paper(
    "Bernstein, Wang, Azizzadenesheli, Anandkumar",
    "signSGD: Compressed Optimisation for Non-Convex Problems",
    2018,
    "https://arxiv.org/abs/1802.04434",
    "ICML",
)
LION = _paper(
    "Chen, Liang, Huang, Real, Wang, Pham, Dong, Luong, Hsieh, Lu, Le",
    "Symbolic Discovery of Optimization Algorithms",
    2023,
    "https://arxiv.org/abs/2302.06675",
    "NeurIPS",
)
LAPROP = _paper(
    "Ziyin, Wang, Ueda",
    "LaProp: Separating Momentum and Adaptivity in Adam",
    2020,
    "https://arxiv.org/abs/2002.04839",
)
LAMB = _paper(
    "You, Li, Reddi, Hseu, Kumar, Bhojanapalli, Song, Demmel, Keutzer, Hsieh",
    "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes",
    2019,
    "https://arxiv.org/abs/1904.00962",
    "ICLR 2020",
)
ADAFACTOR = _paper(
    "Shazeer, Stern",
    "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost",
    2018,
    "https://arxiv.org/abs/1804.04235",
    "ICML",
)
MUON = _paper(
    "Jordan, Jin, Boza, You, Cesista, Newhouse, Bernstein",
    "Muon: An optimizer for hidden layers in neural networks",
    2024,
    "https://kellerjordan.github.io/posts/muon/",
    "blog post",
)
MUON_SCALABLE = _paper(
    "Liu, Su, Yao, Jiang, Lai, Du, et al.",
    "Muon is Scalable for LLM Training",
    2025,
    "https://arxiv.org/abs/2502.16982",
)
SCHEDULE_FREE = _paper(
    "Defazio, Yang, Mehta, Mishchenko, Khaled, Cutkosky",
    "The Road Less Scheduled",
    2024,
    "https://arxiv.org/abs/2405.15682",
    "NeurIPS",
)
PRODIGY = _paper(
    "Mishchenko, Defazio",
    "Prodigy: An Expeditiously Adaptive Parameter-Free Learner",
    2023,
    "https://arxiv.org/abs/2306.06101",
    "ICML 2024",
)
D_ADAPTATION = _paper(
    "Defazio, Mishchenko",
    "Learning-Rate-Free Learning by D-Adaptation",
    2023,
    "https://arxiv.org/abs/2301.07733",
    "ICML",
)
MOMO = _paper(
    "Schaipp, Ohana, Eickenberg, Defazio, Gower",
    "MoMo: Momentum Models for Adaptive Learning Rates",
    2023,
    "https://arxiv.org/abs/2305.07583",
    "ICML 2024",
)
ADAHESSIAN = _paper(
    "Yao, Gholami, Shen, Mustafa, Keutzer, Mahoney",
    "ADAHESSIAN: An Adaptive Second Order Optimizer for Machine Learning",
    2020,
    "https://arxiv.org/abs/2006.00719",
    "AAAI 2021",
)
SHAMPOO = _paper(
    "Gupta, Koren, Singer",
    "Shampoo: Preconditioned Stochastic Tensor Optimization",
    2018,
    "https://arxiv.org/abs/1802.09568",
    "ICML",
)
LIU_NOCEDAL = _paper(
    "Liu, Nocedal",
    "On the limited memory BFGS method for large scale optimization",
    1989,
    "https://doi.org/10.1007/BF01589116",
    "Mathematical Programming",
)

# Update rules shared by a core entry and its ports.
ADAM_RULE = (
    r"m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \quad "
    r"v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\"
    r"\hat m_t = \frac{m_t}{1 - \beta_1^t}, \quad \hat v_t = \frac{v_t}{1 - \beta_2^t} \\"
    r"p_t = p_{t-1} - \eta_t \frac{\hat m_t}{\sqrt{\hat v_t + \epsilon_{root}} + \epsilon}"
)
DECOUPLED = r"p_t = p_{t-1} - \eta_t \left(u_t + \lambda p_{t-1}\right)"


def _decoupled(step: str) -> str:
    """A rule whose step u_t is ``step``'s, followed by the decoupled decay."""
    return rf"u_t = \text{{{step}}} \\" + DECOUPLED


_CORE = [
    # Gradient descent and momentum.
    Entry(
        "sgd",
        "momentum",
        "Stochastic gradient descent with optional heavy-ball or Nesterov momentum.",
        r"m_t = \mu_t m_{t-1} + g_t \\"
        r"p_t = p_{t-1} - \eta_t m_t \quad (\text{Nesterov: } g_t + \mu_t m_t)",
        (ROBBINS_MONRO, POLYAK_1964, SUTSKEVER),
        {"learning_rate": 0.1, "momentum": 0.9},
        anchors=("optax", "paper oracle"),
    ),
    Entry(
        "noisy_sgd",
        "momentum",
        "SGD with annealed Gaussian noise added to the gradient.",
        r"\sigma_t^2 = \eta_{noise} / t^{\gamma} \\"
        r"p_t = p_{t-1} - \eta_t \left(g_t + \mathcal{N}(0, \sigma_t^2)\right)",
        (
            _paper(
                "Neelakantan, Vilnis, Le, Sutskever, Kaiser, Kurach, Martens",
                "Adding Gradient Noise Improves Learning for Very Deep Networks",
                2015,
                "https://arxiv.org/abs/1511.06807",
            ),
        ),
        {"learning_rate": 0.1},
        anchors=("optax", "paper oracle"),
    ),
    Entry(
        "optimistic_gradient_descent",
        "momentum",
        "Optimistic gradient descent: extrapolates with the previous gradient (games, GANs).",
        r"p_t = p_{t-1} - \eta_t \left((\alpha + \beta) g_t - \beta g_{t-1}\right)",
        (
            _paper(
                "Mokhtari, Ozdaglar, Pattathil",
                "A Unified Analysis of Extra-gradient and Optimistic Gradient Methods for "
                "Saddle Point Problems: Proximal Point Approach",
                2020,
                "https://arxiv.org/abs/1901.08511",
                "AISTATS",
            ),
        ),
        {"learning_rate": 0.1},
        anchors=("optax",),
    ),
    # Per-coordinate adaptive.
    Entry(
        "adagrad",
        "adaptive",
        "Adagrad: per-coordinate steps scaled by the root of the summed squared gradients.",
        r"s_t = s_{t-1} + g_t^2 \quad (s_0 = \text{initial\_accumulator\_value}) \\"
        r"p_t = p_{t-1} - \eta_t \frac{g_t}{\sqrt{s_t + \epsilon}}",
        (DUCHI,),
        {"learning_rate": 0.1},
        anchors=("optax", "paper oracle"),
    ),
    Entry(
        "rmsprop",
        "adaptive",
        "RMSprop: steps scaled by a moving RMS of the gradients, optionally centred.",
        r"v_t = \rho v_{t-1} + (1 - \rho) g_t^2 \\"
        r"d_t = \eta_t \frac{g_t}{\sqrt{v_t - [\bar g_t^2] + \epsilon}} \quad "
        r"(\bar g_t \text{ the EMA of } g_t \text{ when centred}) \\"
        r"b_t = \mu b_{t-1} + d_t, \quad p_t = p_{t-1} - b_t",
        (HINTON, GRAVES),
        {"learning_rate": 1e-3},
        anchors=("optax", "paper oracle"),
    ),
    Entry(
        "adadelta",
        "adaptive",
        "Adadelta: the step's own moving RMS over the gradient's, a unit-consistent rate.",
        r"E[g^2]_t = \rho E[g^2]_{t-1} + (1 - \rho) g_t^2 \\"
        r"d_t = \frac{\sqrt{E[\Delta^2]_{t-1} + \epsilon}}{\sqrt{E[g^2]_t + \epsilon}} g_t \\"
        r"E[\Delta^2]_t = \rho E[\Delta^2]_{t-1} + (1 - \rho) d_t^2 \\"
        r"p_t = p_{t-1} - \eta_t d_t",
        (ZEILER,),
        {"learning_rate": 1.0},
        anchors=("optax", "paper oracle"),
    ),
    Entry(
        "madgrad",
        "adaptive",
        "MADGRAD: momentumised dual averaging with a cube-root adaptive denominator.",
        r"\lambda_k = (\eta_k + \epsilon)\sqrt{k + 1} \\"
        r"G_k = G_{k-1} + \lambda_k g_k^2, \quad s_k = s_{k-1} + \lambda_k g_k \\"
        r"z_k = p_0 - \frac{s_k}{\sqrt[3]{G_k} + \epsilon} \\"
        r"p_{k+1} = (1 - c) p_k + c z_k \quad (c = 1 - \text{momentum})",
        (
            _paper(
                "Defazio, Jelassi",
                "Adaptivity without Compromise: A Momentumized, Adaptive, Dual Averaged "
                "Gradient Method for Stochastic Optimization",
                2021,
                "https://arxiv.org/abs/2101.11075",
                "JMLR 2022",
            ),
        ),
        {"learning_rate": 0.01},
        needs=("params",),
        anchors=("optax",),
    ),
    # Adam family.
    Entry(
        "adam",
        "adam",
        "Adam: bias-corrected first and second moment estimates.",
        ADAM_RULE,
        (KINGMA_BA,),
        {"learning_rate": 1e-3},
        anchors=("optax", "paper oracle"),
    ),
    Entry(
        "adamw",
        "adam",
        "AdamW: Adam with weight decay decoupled from the gradient, scaled by the rate.",
        _decoupled("Adam's step") + r" \quad (\lambda = \text{weight\_decay})",
        (LOSHCHILOV, KINGMA_BA),
        {"learning_rate": 1e-3, "weight_decay": 1e-4},
        anchors=("optax", "paper oracle"),
    ),
    Entry(
        "adamax",
        "adam",
        "Adamax: Adam with the infinity norm in place of the second moment.",
        r"m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t \\"
        r"n_t = \max(\beta_2 n_{t-1}, |g_t| + \epsilon) \\"
        r"p_t = p_{t-1} - \eta_t \frac{m_t}{(1 - \beta_1^t)\, n_t}",
        (KINGMA_BA,),
        {"learning_rate": 2e-3},
        anchors=("optax", "paper oracle"),
    ),
    Entry(
        "adamaxw",
        "adam",
        "Adamax with decoupled weight decay.",
        _decoupled("Adamax's step"),
        (KINGMA_BA, LOSHCHILOV),
        {"learning_rate": 2e-3},
        anchors=("optax", "paper oracle"),
    ),
    Entry(
        "nadam",
        "adam",
        "NAdam: Adam with Nesterov momentum (Dozat's constant-beta form, as optax).",
        r"\hat m_t = \frac{\beta_1 m_t}{1 - \beta_1^{t+1}} + \frac{(1 - \beta_1) g_t}{1 - \beta_1^t} \\"
        r"p_t = p_{t-1} - \eta_t \frac{\hat m_t}{\sqrt{v_t / (1 - \beta_2^t) + \epsilon_{root}} + \epsilon}",
        (DOZAT,),
        {"learning_rate": 1e-3},
        anchors=("optax", "paper oracle"),
    ),
    Entry(
        "nadamw",
        "adam",
        "NAdam with decoupled weight decay.",
        _decoupled("NAdam's step"),
        (DOZAT, LOSHCHILOV),
        {"learning_rate": 1e-3},
        anchors=("optax", "paper oracle"),
    ),
    Entry(
        "amsgrad",
        "adam",
        "AMSGrad: Adam with a non-decreasing second moment (the max of the corrected v).",
        r"\hat v^{max}_t = \max\left(\hat v^{max}_{t-1}, \frac{v_t}{1 - \beta_2^t}\right) \\"
        r"p_t = p_{t-1} - \eta_t \frac{m_t / (1 - \beta_1^t)}{\sqrt{\hat v^{max}_t + \epsilon_{root}} + \epsilon}",
        (REDDI,),
        {"learning_rate": 1e-3},
        anchors=("optax", "paper oracle"),
    ),
    Entry(
        "radam",
        "adam",
        "Rectified Adam: the adaptive step switched on as its variance becomes tractable.",
        r"\rho_\infty = \frac{2}{1 - \beta_2} - 1, \quad "
        r"\rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1 - \beta_2^t} \\"
        r"r_t = \sqrt{\frac{(\rho_t - 4)(\rho_t - 2)\rho_\infty}{(\rho_\infty - 4)(\rho_\infty - 2)\rho_t}} \\"
        r"p_t = p_{t-1} - \eta_t \begin{cases} r_t \hat m_t / (\sqrt{\hat v_t + \epsilon_{root}} + \epsilon)"
        r" & \rho_t \ge \text{threshold} \\ \hat m_t & \text{otherwise} \end{cases}",
        (LIU_RADAM,),
        {"learning_rate": 1e-3},
        anchors=("optax", "paper oracle"),
    ),
    Entry(
        "adabelief",
        "adam",
        "AdaBelief: Adam whose second moment is the variance of the gradient around its EMA.",
        r"m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t \\"
        r"s_t = \beta_2 s_{t-1} + (1 - \beta_2)(g_t - m_t)^2 + \epsilon_{root} \\"
        r"p_t = p_{t-1} - \eta_t \frac{m_t / (1 - \beta_1^t)}{\sqrt{s_t / (1 - \beta_2^t)} + \epsilon}",
        (
            _paper(
                "Zhuang, Tang, Ding, Tatikonda, Dvornek, Papademetris, Duncan",
                "AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed Gradients",
                2020,
                "https://arxiv.org/abs/2010.07468",
                "NeurIPS",
            ),
        ),
        {"learning_rate": 1e-3},
        anchors=("optax",),
    ),
    Entry(
        "yogi",
        "adam",
        "Yogi: Adam with an additive, sign-controlled second-moment update.",
        r"m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t \\"
        r"v_t = v_{t-1} - (1 - \beta_2)\, \mathrm{sign}(v_{t-1} - g_t^2)\, g_t^2 \\"
        r"p_t = p_{t-1} - \eta_t \frac{m_t / (1 - \beta_1^t)}{\sqrt{v_t / (1 - \beta_2^t) + \epsilon_{root}} + \epsilon}",
        (
            _paper(
                "Zaheer, Reddi, Sachan, Kale, Kumar",
                "Adaptive Methods for Nonconvex Optimization",
                2018,
                "https://papers.nips.cc/paper/8186-adaptive-methods-for-nonconvex-optimization",
                "NeurIPS",
            ),
        ),
        {"learning_rate": 1e-2},
        anchors=("optax",),
    ),
    Entry(
        "adan",
        "adam",
        "Adan: Adam with Nesterov momentum estimated from gradient differences.",
        r"d_t = g_t - g_{t-1} \\"
        r"m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \quad "
        r"v_t = \beta_2 v_{t-1} + (1 - \beta_2) d_t \\"
        r"n_t = \beta_3 n_{t-1} + (1 - \beta_3)\left(g_t + (1 - \beta_2) d_t\right)^2 \\"
        r"u_t = \frac{\hat m_t + (1 - \beta_2) \hat v_t}{\sqrt{\hat n_t + \epsilon_{root}} + \epsilon} \\"
        + DECOUPLED,
        (
            _paper(
                "Xie, Zhou, Li, Lin, Yan",
                "Adan: Adaptive Nesterov Momentum Algorithm for Faster Optimizing Deep Models",
                2022,
                "https://arxiv.org/abs/2208.06677",
                "IEEE TPAMI 2024",
            ),
        ),
        {"learning_rate": 1e-3},
        anchors=("optax",),
    ),
    Entry(
        "adopt",
        "adam",
        "ADOPT: normalise by the previous second moment, then take momentum; no step at t = 0.",
        r"v_0 = g_0^2 \\"
        r"n_t = \mathrm{clip}\left(\frac{g_t}{\max(\sqrt{v_{t-1}}, \epsilon)}, c(t)\right) \\"
        r"m_t = \beta_1 m_{t-1} + (1 - \beta_1) n_t, \quad p_t = p_{t-1} - \eta_t m_t \\"
        r"v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2",
        (
            _paper(
                "Taniguchi, Harada, Minegishi, Oshima, Jeong, Nagahara, Iiyama, Suzuki, "
                "Iwasawa, Matsuo",
                "ADOPT: Modified Adam Can Converge with Any beta_2 with the Optimal Rate",
                2024,
                "https://arxiv.org/abs/2411.02853",
                "NeurIPS",
            ),
        ),
        {"learning_rate": 1e-3},
        anchors=("optax",),
    ),
    Entry(
        "ademamix",
        "adam",
        "AdEMAMix: Adam plus a slow, uncorrected EMA of the gradients weighted by alpha.",
        r"m^{(1)}_t = \beta_1 m^{(1)}_{t-1} + (1 - \beta_1) g_t, \quad "
        r"m^{(2)}_t = \beta_3 m^{(2)}_{t-1} + (1 - \beta_3) g_t \\"
        r"u_t = \frac{m^{(1)}_t / (1 - \beta_1^t) + \alpha m^{(2)}_t}"
        r"{\sqrt{v_t / (1 - \beta_2^t) + \epsilon_{root}} + \epsilon} \\" + DECOUPLED,
        (
            _paper(
                "Pagliardini, Ablin, Grangier",
                "The AdEMAMix Optimizer: Better, Faster, Older",
                2024,
                "https://arxiv.org/abs/2409.03137",
                "ICLR 2025",
            ),
        ),
        {"learning_rate": 1e-3},
        anchors=("optax",),
    ),
    Entry(
        "simplified_ademamix",
        "adam",
        "Simplified AdEMAMix: an undamped momentum sum plus alpha times the gradient.",
        r"m_t = \beta_1 m_{t-1} + g_t \\"
        r"u_t = \frac{m_t + \alpha g_t}{\sqrt{v_t / (1 - \beta_2^t) + \epsilon_{root}} + \epsilon} \\"
        + DECOUPLED,
        (
            _paper(
                "Morwani, Vyas, Ha, Kakade",
                "Connections between Schedule-Free Optimizers, AdEMAMix, and Accelerated "
                "SGD Variants",
                2025,
                "https://arxiv.org/abs/2502.02431",
            ),
        ),
        {"learning_rate": 1e-4},
        anchors=("optax",),
    ),
    Entry(
        "optimistic_adam_v2",
        "adam",
        "Optimistic Adam: optimism applied to Adam's steps (GAN training).",
        r"a_t = \text{Adam's step (Nesterov)} \\"
        r"p_t = p_{t-1} - \eta_t \left((\alpha + \beta) a_t - \beta a_{t-1}\right)",
        (
            _paper(
                "Daskalakis, Ilyas, Syrgkanis, Zeng",
                "Training GANs with Optimism",
                2018,
                "https://arxiv.org/abs/1711.00141",
                "ICLR",
            ),
        ),
        {"learning_rate": 1e-3},
        anchors=("optax",),
    ),
    Entry(
        "acprop",
        "adam",
        "ACProp: the gradient normalised by the previous step's centred second moment.",
        r"u_t = \frac{g_t}{\sqrt{s_{t-1} / (1 - \beta_2^{t-1})} + \epsilon} \\"
        r"m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t \\"
        r"s_t = \beta_2 s_{t-1} + (1 - \beta_2)(g_t - m_{t-1})^2 + \epsilon_{root} \\" + DECOUPLED,
        (
            _paper(
                "Zhuang, Ding, Tang, Dvornek, Tatikonda, Duncan",
                "Momentum Centering and Asynchronous Update for Adaptive Gradient Methods",
                2021,
                "https://arxiv.org/abs/2110.05454",
                "NeurIPS",
            ),
        ),
        {"learning_rate": 1e-3},
        anchors=("optax",),
    ),
    Entry(
        "laprop",
        "adam",
        "LaProp: momentum of Adam-normalised gradients (momentum and adaptivity separated).",
        r"v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\"
        r"m_t = \beta_1 m_{t-1} + (1 - \beta_1) \frac{g_t}{\sqrt{v_t / (1 - \beta_2^t) + \epsilon_{root}} + \epsilon} \\"
        r"u_t = \frac{m_t}{1 - \beta_1^t} \\" + DECOUPLED,
        (LAPROP,),
        {"learning_rate": 1e-3},
        anchors=("paper oracle",),
    ),
    Entry(
        "mars",
        "adam",
        "MARS: AdamW (or Lion) on a variance-reduced, clipped gradient.",
        r"c_t = g_t + \gamma \frac{\beta_1}{1 - \beta_1}(g_t - g_{t-1}) \\"
        r"c_t \leftarrow c_t / \max(1, \|c_t\| / \text{max\_norm}) \\"
        r"u_t = \text{Adam's step on } c_t \\" + DECOUPLED,
        (
            _paper(
                "Yuan, Liu, Wu, Zhou, Gu",
                "MARS: Unleashing the Power of Variance Reduction for Training Large Models",
                2024,
                "https://arxiv.org/abs/2411.10438",
                "ICML 2025",
            ),
        ),
        {"learning_rate": 3e-3},
        anchors=("pytorch-optimizer", "paper oracle"),
    ),
    # Sign-based.
    Entry(
        "sign_sgd",
        "sign",
        "signSGD: steps of the gradient's sign.",
        r"p_t = p_{t-1} - \eta_t\, \mathrm{sign}(g_t)",
        (SIGNSGD,),
        {"learning_rate": 1e-3},
        anchors=("optax", "paper oracle"),
    ),
    Entry(
        "signum",
        "sign",
        "Signum: the sign of an EMA of the gradients.",
        r"m_t = \beta m_{t-1} + (1 - \beta) g_t \\ p_t = p_{t-1} - \eta_t\, \mathrm{sign}(m_t)",
        (SIGNSGD,),
        {"learning_rate": 1e-3},
        anchors=("optax", "paper oracle"),
    ),
    Entry(
        "lion",
        "sign",
        "Lion: the sign of an interpolated momentum, with decoupled weight decay.",
        r"p_t = p_{t-1} - \eta_t \left(\mathrm{sign}\left((1 - \beta_1) g_t + \beta_1 m_{t-1}\right)"
        r" + \lambda p_{t-1}\right) \\"
        r"m_t = \beta_2 m_{t-1} + (1 - \beta_2) g_t",
        (LION,),
        {"learning_rate": 1e-4},
        anchors=("optax", "paper oracle"),
    ),
    Entry(
        "rprop",
        "sign",
        "Rprop: per-coordinate step sizes grown or shrunk by the gradient's sign changes.",
        r"s_t = g_t g_{t-1} \\"
        r"d_t = \mathrm{clip}\left(d_{t-1} \cdot \begin{cases} \eta^+ & s_t > 0 \\ \eta^- & s_t < 0"
        r" \\ 1 & \text{else} \end{cases}, d_{min}, d_{max}\right), \quad d_0 = \eta \\"
        r"g_t \leftarrow 0 \text{ where } s_t < 0, \quad p_t = p_{t-1} - \mathrm{sign}(g_t) d_t",
        (RIEDMILLER,),
        {"learning_rate": 0.01},
        anchors=("paper oracle",),
    ),
    # Layer-wise.
    Entry(
        "lamb",
        "layerwise",
        "LAMB: Adam's step plus decay, scaled per layer by its trust ratio.",
        r"r_t = \text{Adam's step} + \lambda p_{t-1} \\"
        r"p_t = p_{t-1} - \eta_t \frac{\|p_{t-1}\|}{\|r_t\|} r_t \quad \text{(per leaf)}",
        (LAMB,),
        {"learning_rate": 1e-3, "weight_decay": 1e-4},
        anchors=("optax",),
    ),
    Entry(
        "lars",
        "layerwise",
        "LARS: SGD with momentum, each layer's step scaled by its trust ratio.",
        r"r_t = g_t + \lambda p_{t-1} \\"
        r"r_t \leftarrow \kappa \frac{\|p_{t-1}\|}{\|r_t\| + \epsilon} r_t \quad \text{(per leaf)} \\"
        r"m_t = \mu m_{t-1} - \eta_t r_t, \quad p_t = p_{t-1} + m_t",
        (
            _paper(
                "You, Gitman, Ginsburg",
                "Large Batch Training of Convolutional Networks",
                2017,
                "https://arxiv.org/abs/1708.03888",
            ),
        ),
        {"learning_rate": 0.1, "weight_decay": 1e-4},
        anchors=("optax",),
    ),
    Entry(
        "fromage",
        "layerwise",
        "Fromage: steps relative to each layer's norm, then a shrinkage.",
        r"p_t = \frac{p_{t-1} - \eta_t \frac{\|p_{t-1}\|}{\|g_t\|} g_t}{\sqrt{1 + \eta_t^2}} \quad"
        r" \text{(per leaf)}",
        (
            _paper(
                "Bernstein, Vahdat, Yue, Liu",
                "On the distance between two neural networks and the stability of learning",
                2020,
                "https://arxiv.org/abs/2002.03432",
                "NeurIPS",
            ),
        ),
        {"learning_rate": 0.01},
        anchors=("optax",),
    ),
    Entry(
        "novograd",
        "layerwise",
        "NovoGrad: momentum of gradients normalised by a per-layer second moment.",
        r"v_t = \beta_2 v_{t-1} + (1 - \beta_2)\|g_t\|^2 \quad (v_1 = \|g_1\|^2) \\"
        r"m_t = \beta_1 m_{t-1} + \frac{g_t}{\sqrt{v_t + \epsilon_{root}} + \epsilon} + \lambda p_{t-1} \\"
        r"p_t = p_{t-1} - \eta_t m_t",
        (
            _paper(
                "Ginsburg, Castonguay, Hrinchuk, Kuchaiev, Lavrukhin, Leary, Li, Nguyen, "
                "Zhang, Cohen",
                "Stochastic Gradient Methods with Layer-wise Adaptive Moments for Training of "
                "Deep Networks",
                2019,
                "https://arxiv.org/abs/1905.11286",
            ),
        ),
        {"learning_rate": 1e-3},
        anchors=("optax",),
    ),
    # Factored.
    Entry(
        "adafactor",
        "factored",
        "Adafactor: a factored second moment (row and column statistics) and relative steps.",
        r"R_t = \beta_t R_{t-1} + (1 - \beta_t)\,\mathrm{mean}_j(g_t^2 + \epsilon), \quad "
        r"C_t = \beta_t C_{t-1} + (1 - \beta_t)\,\mathrm{mean}_i(g_t^2 + \epsilon) \\"
        r"u_t = g_t / \sqrt{R_t C_t / \mathrm{mean}(R_t)}, \quad "
        r"u_t \leftarrow u_t / \max(1, \mathrm{rms}(u_t) / d) \\"
        r"p_t = p_{t-1} - \eta_t \max(\mathrm{rms}(p_{t-1}), 10^{-3})\, u_t",
        (ADAFACTOR,),
        {"learning_rate": 1e-2},
        anchors=("optax",),
    ),
    Entry(
        "sm3",
        "factored",
        "SM3: Adagrad with one accumulator per row and per column (memory-efficient).",
        r"v_t = g_t^2 + \min_i \mu^{(i)}_{t-1} \\"
        r"\mu^{(i)}_t = \max \text{ of } v_t \text{ over every axis but } i \\"
        r"m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t / \sqrt{v_t + \epsilon}, \quad "
        r"p_t = p_{t-1} - \eta_t m_t",
        (
            _paper(
                "Anil, Gupta, Koren, Singer",
                "Memory-Efficient Adaptive Optimization",
                2019,
                "https://arxiv.org/abs/1901.11150",
                "NeurIPS",
            ),
        ),
        {"learning_rate": 0.1},
        anchors=("optax",),
    ),
    # Matrix.
    Entry(
        "muon",
        "matrix",
        "Muon: Nesterov momentum orthogonalised by Newton-Schulz for matrices, AdamW elsewhere.",
        r"m_t = \beta m_{t-1} + (1 - \beta) g_t, \quad "
        r"M_t = \frac{\beta m_t}{1 - \beta^{t+1}} + \frac{(1 - \beta) g_t}{1 - \beta^t} \\"
        r"O_t = \mathrm{NS}_5(M_t) \approx U V^\top \quad (M_t = U \Sigma V^\top) \\"
        r"p_t = p_{t-1} - \eta_t (s\, O_t + \lambda p_{t-1})",
        (MUON, MUON_SCALABLE),
        {"learning_rate": 0.02},
        anchors=("optax",),
    ),
    # Kronecker.
    Entry(
        "shampoo",
        "kronecker",
        "Shampoo: Kronecker-factored preconditioners per block, grafted onto a simpler step.",
        r"L_t = \beta_2 L_{t-1} + (1 - \beta_2) G_t G_t^\top, \quad "
        r"R_t = \beta_2 R_{t-1} + (1 - \beta_2) G_t^\top G_t \\"
        r"D_t = L_t^{-1/4} G_t R_t^{-1/4}, \quad "
        r"s_t = D_t \frac{\|\text{graft}(G_t)\|}{\|D_t\|} \\"
        r"m_t = \beta_1 m_{t-1} + s_t, \quad p_t = p_{t-1} - \eta_t (s_t + \beta_1 m_t)"
        r" \quad \text{(Nesterov)}",
        (
            SHAMPOO,
            _paper(
                "Anil, Gupta, Koren, Regan, Singer",
                "Scalable Second Order Optimization for Deep Learning",
                2020,
                "https://arxiv.org/abs/2002.09018",
            ),
        ),
        {"learning_rate": 1e-3, "block_size": 4},
        anchors=("pytorch-optimizer", "paper oracle"),
    ),
    Entry(
        "soap",
        "kronecker",
        "SOAP: Adam run in the eigenbasis of Shampoo's preconditioners.",
        r"L \leftarrow \beta_s L + (1 - \beta_s) G G^\top, \quad "
        r"R \leftarrow \beta_s R + (1 - \beta_s) G^\top G \\"
        r"Q_L, Q_R = \text{eigenbases of } L, R \text{ (refreshed every } k \text{ steps)} \\"
        r"G' = Q_L^\top G Q_R, \quad M' = \beta_1 M' + (1 - \beta_1) G', \quad "
        r"V = \beta_2 V + (1 - \beta_2) G'^2 \\"
        r"N = Q_L \frac{M'}{\sqrt{V} + \epsilon} Q_R^\top, \quad "
        r"p_t = p_{t-1} - \eta_t \left(\frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t} N"
        r" + \lambda p_{t-1}\right)",
        (
            _paper(
                "Vyas, Morwani, Zhao, Kwun, Shapira, Brandfonbrener, Janson, Kakade",
                "SOAP: Improving and Stabilizing Shampoo using Adam",
                2024,
                "https://arxiv.org/abs/2409.11321",
                "ICLR 2025",
            ),
        ),
        {"lr": 3e-3},
        anchors=("pytorch-optimizer", "paper oracle"),
    ),
    # Curvature.
    Entry(
        "sophia",
        "curvature",
        "Sophia: momentum preconditioned by a Hessian-diagonal EMA, clipped per coordinate.",
        r"m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t \\"
        r"h_t = \beta_2 h_{t-k} + (1 - \beta_2) \hat D_t \quad \text{every } k \text{ steps"
        r" (Hutchinson: } \hat D = z \odot H z) \\"
        r"u_t = \mathrm{clip}\left(\frac{m_t / (1 - \beta_1^t)}{\max(\gamma h_{t-1}, \epsilon)}, -c, c\right) \\"
        + DECOUPLED,
        (
            _paper(
                "Liu, Li, Hall, Liang, Ma",
                "Sophia: A Scalable Stochastic Second-order Optimizer for Language Model "
                "Pre-training",
                2023,
                "https://arxiv.org/abs/2305.14342",
                "ICLR 2024",
            ),
        ),
        {"learning_rate": 1e-3},
        needs=("params", "value_fn"),
        anchors=("optax",),
    ),
    Entry(
        "adahessian",
        "curvature",
        "AdaHessian: Adam whose second moment is the squared Hutchinson Hessian diagonal.",
        r"D_t = z \odot H z \quad (z \text{ Rademacher; block-averaged}) \\"
        r"v_t = \beta_2 v_{t-1} + (1 - \beta_2) D_t^2, \quad m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t \\"
        r"u_t = \frac{m_t / (1 - \beta_1^t)}{(v_t / (1 - \beta_2^t))^{k/2} + \epsilon} \\"
        + DECOUPLED,
        (ADAHESSIAN,),
        {"learning_rate": 0.15},
        needs=("params", "value_fn"),
        anchors=("paper oracle",),
    ),
    Entry(
        "saddle_free_newton",
        "curvature",
        "Saddle-free Newton: Newton steps with every negative curvature's sign flipped.",
        r"p_t = p_{t-1} - \eta_t \left(|H_k| + \delta I\right)^{-1} g_t \\"
        r"|H_k| = \text{the Hessian's absolute value on the } k\text{-dim. Krylov space of } g_t",
        (
            _paper(
                "Dauphin, Pascanu, Gulcehre, Cho, Ganguli, Bengio",
                "Identifying and attacking the saddle point problem in high-dimensional "
                "non-convex optimization",
                2014,
                "https://arxiv.org/abs/1406.2572",
                "NeurIPS",
            ),
        ),
        {"krylov_dim": 4},
        needs=("params", "value_fn"),
        anchors=("paper oracle",),
    ),
    Entry(
        "negative_curvature_descent",
        "curvature",
        "Gradient descent that leaves saddle points along their negative curvature.",
        r"p_t = p_{t-1} - \eta_t g_t \quad \text{where } \|g_t\| > \text{grad\_tol} \\"
        r"p_t = p_{t-1} \pm \frac{|\lambda|}{L} v \quad \text{otherwise, if } "
        r"\lambda < -\text{curvature\_tol} \\"
        r"(\lambda, v) \text{ the lowest Ritz pair of } H \text{ (Lanczos)}",
        (
            _paper(
                "Carmon, Duchi, Hinder, Sidford",
                "Accelerated Methods for Non-Convex Optimization",
                2016,
                "https://arxiv.org/abs/1611.00756",
                "SIAM J. Optim. 2018",
            ),
            _paper(
                "Liu, Li, Wang, Yi, Yang",
                "Adaptive Negative Curvature Descent with Applications in Non-convex Optimization",
                2018,
                "https://papers.nips.cc/paper/2018/hash/"
                "f52854cc99ae1c1966b0a21d0127975b-Abstract.html",
                "NeurIPS",
            ),
        ),
        {"learning_rate": 0.1, "krylov_dim": 4},
        needs=("params", "value_fn"),
        anchors=(),
    ),
    # Line search and quasi-Newton.
    Entry(
        "lbfgs",
        "line_search",
        "L-BFGS with a strong-Wolfe zoom line search, for full-batch problems.",
        r"d_k = -H_k g_k \quad (H_k \text{: two-loop recursion over the last } m \text{ pairs}) \\"
        r"p_{k+1} = p_k + a_k d_k \quad (a_k \text{: strong Wolfe step, first guess } 1)",
        (
            LIU_NOCEDAL,
            _paper(
                "Nocedal",
                "Updating quasi-Newton matrices with limited storage",
                1980,
                "https://doi.org/10.1090/S0025-5718-1980-0572855-7",
                "Mathematics of Computation",
            ),
        ),
        {"memory_size": 5},
        needs=("params", "value", "grad", "value_fn"),
        anchors=("optax", "paper oracle"),
    ),
    Entry(
        "conjugate_gradient",
        "line_search",
        "Nonlinear conjugate gradient (Polak-Ribiere+ or Fletcher-Reeves) with a Wolfe search.",
        r"\beta_t = \max\left(0, \frac{g_t^\top (g_t - g_{t-1})}{\|g_{t-1}\|^2}\right)"
        r" \quad \left(\text{FR: } \frac{\|g_t\|^2}{\|g_{t-1}\|^2}\right) \\"
        r"d_t = -g_t + \beta_t d_{t-1}, \quad p_t = p_{t-1} + a_t d_t"
        r" \quad (a_t \text{: strong Wolfe step})",
        (
            _paper(
                "Fletcher, Reeves",
                "Function minimization by conjugate gradients",
                1964,
                "https://doi.org/10.1093/comjnl/7.2.149",
                "The Computer Journal",
            ),
            _paper(
                "Polak, Ribière",
                "Note sur la convergence de méthodes de directions conjuguées",
                1969,
                "https://doi.org/10.1051/m2an/196903R100351",
                "RIRO",
            ),
        ),
        {},
        needs=("params", "value", "grad", "value_fn"),
        anchors=(),
    ),
    # Parameter-free.
    Entry(
        "prodigy",
        "parameter_free",
        "Prodigy: Adam whose learning rate is estimated on the fly from the distance travelled.",
        r"\hat\eta_t = d_t \eta_t \sqrt{1 - \beta_2^t} / (1 - \beta_1^t) \\"
        r"m_t = \beta_1 m + (1 - \beta_1) d_t g, \quad v_t = \beta_2 v + (1 - \beta_2) d_t^2 g^2 \\"
        r"s_t = \beta_3 s + \frac{d_t}{d_0} \hat\eta_t g, \quad "
        r"r_t = \beta_3 r + \frac{d_t}{d_0} \hat\eta_t \langle g, p_0 - p \rangle \\"
        r"d_{t+1} = \max\left(d_t, r_t / \|s_t\|_1\right), \quad "
        r"u_t = -\hat\eta_t \left(\frac{m_t}{\sqrt{v_t} + d_{t+1}\epsilon} + \lambda p\right)",
        (PRODIGY,),
        {},
        needs=("params",),
        anchors=("optax",),
    ),
    Entry(
        "dadapt_adamw",
        "parameter_free",
        "AdamW with D-Adaptation's learning rate, a lower bound on the distance to the solution.",
        r"\hat\eta_t = d_t \eta_t \sqrt{1 - \beta_2^t} / (1 - \beta_1^t) \\"
        r"r_t = \sqrt{\beta_2} r + (1 - \sqrt{\beta_2}) \hat\eta_t \langle g, s / (\sqrt{v} + \epsilon)\rangle \\"
        r"s_t = \sqrt{\beta_2} s + (1 - \sqrt{\beta_2}) \hat\eta_t g, \quad "
        r"d_{t+1} = \max\left(d_t, \frac{r_t}{(1 - \sqrt{\beta_2}) \|s_t\|_1}\right) \\"
        r"u_t = -\frac{m_t}{\sqrt{v_t} + \epsilon} - \lambda \hat\eta_t p",
        (D_ADAPTATION,),
        {},
        needs=("params",),
        anchors=("optax",),
    ),
    Entry(
        "polyak_sgd",
        "parameter_free",
        "SGD with the stochastic Polyak step size, from the loss and its lower bound.",
        r"\gamma_t = \min\left(\frac{f(p_{t-1}) - f^*}{\|g_t\|^2 + \epsilon}, \gamma_{max}\right) \\"
        r"p_t = p_{t-1} - \gamma_t g_t",
        (
            _paper(
                "Loizou, Vaswani, Laradji, Lacoste-Julien",
                "Stochastic Polyak Step-size for SGD: An Adaptive Learning Rate for Fast "
                "Convergence",
                2020,
                "https://arxiv.org/abs/2002.10542",
                "AISTATS 2021",
            ),
        ),
        {},
        needs=("params", "value"),
        anchors=("optax",),
    ),
    Entry(
        "dog",
        "parameter_free",
        "DoG: the step is the largest distance travelled over the root of summed squared gradients.",
        r"r_t = \max\left(r_\epsilon, \max_{k \le t} \|p_k - p_0\|\right) \\"
        r"p_t = p_{t-1} - \eta_t \frac{r_t}{\sqrt{\sum_{k \le t} \|g_k\|^2 + \epsilon}} g_t",
        (
            _paper(
                "Ivgi, Hinder, Carmon",
                "DoG is SGD's Best Friend: A Parameter-Free Dynamic Step Size Schedule",
                2023,
                "https://arxiv.org/abs/2302.12022",
                "ICML",
            ),
        ),
        {},
        needs=("params",),
        anchors=("optax",),
    ),
    Entry(
        "dowg",
        "parameter_free",
        "DoWG: distance over weighted gradients, a parameter-free normalised step.",
        r"r_t = \max\left(r_{t-1}, \|p_t - p_0\|\right), \quad "
        r"v_t = v_{t-1} + r_t^2 \|g_t\|^2 \\"
        r"p_t = p_{t-1} - \eta_t \frac{r_t^2}{\sqrt{v_t} + \epsilon} g_t",
        (
            _paper(
                "Khaled, Mishchenko, Jin",
                "DoWG Unleashed: An Efficient Universal Parameter-Free Gradient Descent Method",
                2023,
                "https://arxiv.org/abs/2305.16284",
                "NeurIPS",
            ),
        ),
        {},
        needs=("params",),
        anchors=("optax",),
    ),
    Entry(
        "momo",
        "parameter_free",
        "MoMo: SGD with momentum and a Polyak-type step from a model of the loss.",
        r"m = \beta m + (1 - \beta) g, \quad \bar f = \beta \bar f + (1 - \beta) f, \quad "
        r"\gamma = \beta \gamma + (1 - \beta)\langle g, p \rangle \\"
        r"\tau = \min\left(\eta_t, \frac{\max\left((1 + \eta_t\lambda)(\bar f - f^* - \gamma)"
        r" + \langle m, p \rangle, 0\right)}{\|m\|^2}\right) \\"
        r"p \leftarrow \frac{p - \tau m}{1 + \eta_t \lambda}",
        (MOMO,),
        {},
        needs=("params", "value"),
        anchors=("optax",),
    ),
    Entry(
        "momo_adam",
        "parameter_free",
        "MoMo-Adam: Adam(W) with a Polyak-type step from a model of the loss.",
        r"d = m / (\epsilon + \sqrt{v / (1 - \beta_2^t)}) \\"
        r"\tau = \min\left(\frac{\eta_t}{1 - \beta_1^t}, \frac{\max\left((1 + \eta_t\lambda)"
        r"(\bar f - (1 - \beta_1^t) f^* - \gamma) + \langle m, p \rangle, 0\right)}"
        r"{\langle m, d \rangle}\right) \\"
        r"p \leftarrow \frac{p - \tau d}{1 + \eta_t \lambda}",
        (MOMO,),
        {},
        needs=("params", "value"),
        anchors=("optax",),
    ),
    Entry(
        "cocob",
        "parameter_free",
        "COCOB-Backprop: coin-betting steps, no learning rate to tune.",
        r"L \leftarrow \max(L, |g|), \quad G \leftarrow G + |g|, \quad "
        r"R \leftarrow \max(R - g (p - p_0), 0), \quad C \leftarrow C - g \\"
        r"p \leftarrow p_0 + \frac{C}{L \max(G + L, \alpha L)} (L + R)",
        (
            _paper(
                "Orabona, Tommasi",
                "Training Deep Networks without Learning Rates Through Coin Betting",
                2017,
                "https://arxiv.org/abs/1705.07795",
                "NeurIPS",
            ),
        ),
        {},
        needs=("params",),
        anchors=("optax",),
    ),
    Entry(
        "mechanize",
        "parameter_free",
        "Mechanic: learns the scale of any base optimizer's steps by online betting.",
        r"\Delta = \frac{x_0 - x_t}{S_{t-1} + \epsilon}, \quad "
        r"h = \left\langle g + \lambda S_{t-1} \frac{|g|}{|x_t| + \epsilon} x_t, \Delta \right\rangle \\"
        r"m_i \leftarrow \max(\beta_i m_i, |h| + \epsilon), \quad v_i \leftarrow \beta_i^2 v_i + h^2, \quad "
        r"r_i \leftarrow \beta_i r_i + \mathrm{clip}(h, -m_i, m_i) s_i \\"
        r"s_i = \frac{s_{init} m_i / n + \max(r_i, 0)}{\sqrt{v_i} + \epsilon}, \quad "
        r"x_{t+1} = x_0 - \textstyle\sum_i s_i\, (\Delta - u_t)",
        (
            _paper(
                "Cutkosky, Defazio, Mehta",
                "Mechanic: A Learning Rate Tuner",
                2023,
                "https://arxiv.org/abs/2306.00144",
                "NeurIPS",
            ),
        ),
        {"base_optimizer": Code("gradtx.adam(1.0)")},
        needs=("params",),
        anchors=("optax",),
    ),
    # Schedule-free.
    Entry(
        "schedule_free_sgd",
        "schedule_free",
        "Schedule-Free SGD: interpolation between an SGD sequence and its weighted average.",
        r"y_{t-1} = \beta_1 x_{t-1} + (1 - \beta_1) z_{t-1} \\"
        r"z_t = z_{t-1} - \eta_t \left(\nabla f(y_{t-1}) + \lambda y_{t-1}\right) \\"
        r"x_t = (1 - c_t) x_{t-1} + c_t z_t, \quad "
        r"c_t = \frac{t^r \eta_{max}^{w}}{\sum_{k \le t} k^r \eta_{max}^{w}}",
        (SCHEDULE_FREE,),
        {"learning_rate": 0.1},
        needs=("params",),
        anchors=("optax", "paper oracle"),
    ),
    Entry(
        "schedule_free_adamw",
        "schedule_free",
        "Schedule-Free AdamW: Schedule-Free around AdamW without momentum.",
        r"v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2, \quad g_t = \nabla f(y_{t-1}) \\"
        r"z_t = z_{t-1} - \eta_t \left(\frac{g_t}{\sqrt{v_t / (1 - \beta_2^t)} + \epsilon}"
        r" + \lambda y_{t-1}\right) \\"
        r"x_t = (1 - c_t) x_{t-1} + c_t z_t, \quad y_t = \beta_1 x_t + (1 - \beta_1) z_t",
        (SCHEDULE_FREE,),
        {"learning_rate": 2.5e-3},
        needs=("params",),
        anchors=("optax",),
    ),
    # Gradient-free: scored through value_fn=, params moved to the method's mean or best.
    Entry(
        "cma_es",
        "gradient_free",
        "CMA-ES: a Gaussian search distribution whose mean, step size and covariance adapt.",
        r"x_i = m_{t-1} + \sigma_{t-1} B D z_i, \quad z_i \sim \mathcal{N}(0, I) \\"
        r"m_t = \sum_{i \le \mu} w_i x_{i:\lambda} \\"
        r"p_c \leftarrow (1 - c_c) p_c + h_\sigma \sqrt{c_c (2 - c_c) \mu_w}\,(m_t - m_{t-1}) / \sigma_{t-1} \\"
        r"C \leftarrow (1 - c_1 - c_\mu) C + c_1 p_c p_c^\top"
        r" + c_\mu \sum_i w_i y_{i:\lambda} y_{i:\lambda}^\top \\"
        r"\sigma_t = \sigma_{t-1} \exp\left(\frac{c_\sigma}{d_\sigma}"
        r"\left(\frac{\|p_\sigma\|}{E\|\mathcal{N}(0, I)\|} - 1\right)\right)",
        (
            _paper(
                "Hansen, Ostermeier",
                "Completely Derandomized Self-Adaptation in Evolution Strategies",
                2001,
                "https://doi.org/10.1162/106365601750190398",
                "Evolutionary Computation",
            ),
            _paper(
                "Hansen",
                "The CMA Evolution Strategy: A Tutorial",
                2016,
                "https://arxiv.org/abs/1604.00772",
            ),
        ),
        {"sigma0": 0.5},
        needs=("params", "value_fn"),
        anchors=(),
    ),
    Entry(
        "sep_cma_es",
        "gradient_free",
        "Separable CMA-ES: a diagonal covariance, linear time and memory in the dimension.",
        r"x_i = m_{t-1} + \sigma_{t-1}\, d \odot z_i, \quad z_i \sim \mathcal{N}(0, I) \\"
        r"m_t = \sum_{i \le \mu} w_i x_{i:\lambda} \\"
        r"d^2 \leftarrow d^2 \odot \exp\left(c_1 (p_c^2 / d^2 - 1)"
        r" + c_\mu \sum_i w_i (z_{i:\lambda}^2 - 1)\right)",
        (
            _paper(
                "Ros, Hansen",
                "A Simple Modification in CMA-ES Achieving Linear Time and Space Complexity",
                2008,
                "https://doi.org/10.1007/978-3-540-87700-4_30",
                "PPSN X",
            ),
        ),
        {"sigma0": 0.5},
        needs=("params", "value_fn"),
        anchors=(),
    ),
    Entry(
        "particle_swarm",
        "gradient_free",
        "Global-best particle swarm: particles pulled towards their own and the swarm's best.",
        r"v_i \leftarrow w v_i + c_1 r_1 (p_i - x_i) + c_2 r_2 (g - x_i), \quad"
        r" r_1, r_2 \sim U[0, 1) \\"
        r"x_i \leftarrow x_i + v_i \\"
        r"p_i \leftarrow x_i \text{ if } f(x_i) < f(p_i), \quad g = \arg\min_i f(p_i)",
        (
            _paper(
                "Kennedy, Eberhart",
                "Particle Swarm Optimization",
                1995,
                "https://doi.org/10.1109/ICNN.1995.488968",
                "ICNN 1995",
            ),
            _paper(
                "Shi, Eberhart",
                "A Modified Particle Swarm Optimizer",
                1998,
                "https://doi.org/10.1109/ICEC.1998.699146",
                "IEEE ICEC 1998",
            ),
        ),
        {},
        needs=("params", "value_fn"),
        anchors=(),
    ),
    Entry(
        "genetic_algorithm",
        "gradient_free",
        "A real-valued genetic algorithm: tournaments, crossover, Gaussian mutation, elitism.",
        r"\text{parents} = \text{tournament}_k(P_{t-1}), \quad"
        r" c = \text{crossover}(a, b) \text{ with probability } p_c \\"
        r"c_j \leftarrow c_j + s\, \xi_j \text{ with probability } p_m, \quad"
        r" \xi_j \sim \mathcal{N}(0, 1) \\"
        r"P_t = \text{elites}(P_{t-1}) \cup \text{children}, \quad"
        r" p_t = \arg\min \{f(x) : x \text{ seen}\}",
        (
            _paper(
                "Holland",
                "Adaptation in Natural and Artificial Systems",
                1975,
                "https://doi.org/10.7551/mitpress/1090.001.0001",
                "University of Michigan Press",
            ),
        ),
        {"popsize": 16},
        needs=("params", "value_fn"),
        anchors=(),
    ),
    Entry(
        "simulated_annealing",
        "gradient_free",
        "Simulated annealing: Gaussian proposals accepted by the Metropolis rule as T cools.",
        r"y = x + s_t\, \xi, \quad \xi \sim \mathcal{N}(0, I) \\"
        r"x \leftarrow y \text{ with probability } \min\left(1,"
        r" e^{-(f(y) - f(x)) / T_t}\right) \\"
        r"p_t = \arg\min \{f(x) : x \text{ visited}\}",
        (
            _paper(
                "Kirkpatrick, Gelatt, Vecchi",
                "Optimization by Simulated Annealing",
                1983,
                "https://doi.org/10.1126/science.220.4598.671",
                "Science",
            ),
        ),
        {},
        needs=("params", "value_fn"),
        anchors=(),
    ),
]

CORE: Mapping[str, Entry] = types.MappingProxyType({e.name: e for e in _CORE})


def _port(
    framework: str,
    name: str,
    summary: str,
    ports: str | None,
    example: Mapping[str, Any],
    *,
    rule: str | None = None,
    papers: tuple[Paper, ...] | None = None,
    family: str | None = None,
    needs: tuple[str, ...] | None = None,
    anchors: tuple[str, ...] | None = None,
    matrix_params: bool = False,
) -> Entry:
    """A port's entry; what it leaves out is the ported core entry's."""
    core = CORE[ports] if ports else None
    return Entry(
        f"compat.{framework}.{name}",
        family or core.family,
        summary,
        rule or core.rule,
        papers or core.papers,
        example,
        needs=needs or (core.needs if core else ("params",)),
        anchors=anchors or ({"pytorch": "PyTorch", "keras": "Keras"}[framework],),
        ports=ports,
        matrix_params=matrix_params,
    )


def _torch(name, summary, ports, example, **more):
    return _port("pytorch", name, summary, ports, example, **more)


def _keras(name, summary, ports, example, **more):
    return _port("keras", name, summary, ports, example, **more)


COUPLED = r"g_t \leftarrow g_t + \lambda p_{t-1} \\"
KERAS_DECAY = r"p' = p_{t-1} (1 - \lambda \eta_t) \quad \text{(Keras's decay, first)} \\"
AUTHORS = ("authors' package",)

_PORTS = [
    _torch(
        "sgd",
        "torch.optim.SGD: coupled weight decay, dampening, the rate outside the buffer.",
        "sgd",
        {"lr": 0.1, "momentum": 0.9},
        rule=COUPLED + r"b_t = \mu b_{t-1} + (1 - \tau) g_t \quad (b_1 = g_1) \\"
        r"p_t = p_{t-1} - \eta_t \left(b_t \text{ or, Nesterov, } g_t + \mu b_t\right)",
    ),
    _torch(
        "adam",
        "torch.optim.Adam: Adam with coupled (or decoupled) weight decay and amsgrad.",
        "adam",
        {"lr": 1e-3},
        rule=COUPLED + ADAM_RULE,
    ),
    _torch(
        "adamw",
        "torch.optim.AdamW: Adam with decoupled weight decay (default 1e-2).",
        "adamw",
        {"lr": 1e-3},
        rule=r"p' = p_{t-1} (1 - \eta_t \lambda) \\" + ADAM_RULE.replace("p_{t-1}", "p'"),
    ),
    _torch(
        "adamax",
        "torch.optim.Adamax (eps inside the max, as optax).",
        "adamax",
        {"lr": 2e-3},
    ),
    _torch(
        "nadam",
        "torch.optim.NAdam: Dozat's momentum schedule with psi = momentum_decay.",
        "nadam",
        {"lr": 2e-3},
        rule=r"\mu_t = \beta_1 (1 - \tfrac12 0.96^{t \psi}), \quad P_t = \mu_1 \cdots \mu_t \\"
        r"p_t = p_{t-1} - \eta_t \frac{\frac{1 - \mu_t}{1 - P_t} g_t + "
        r"\frac{\mu_{t+1}}{1 - P_t \mu_{t+1}} m_t}{\sqrt{v_t / (1 - \beta_2^t)} + \epsilon}",
    ),
    _torch(
        "radam",
        "torch.optim.RAdam: eps added before the bias correction; rectified where rho_t > 5.",
        "radam",
        {"lr": 1e-3},
        rule=r"p_t = p_{t-1} - \eta_t \begin{cases} r_t \frac{m_t}{1 - \beta_1^t}"
        r" \frac{\sqrt{1 - \beta_2^t}}{\sqrt{v_t} + \epsilon} & \rho_t > 5 \\"
        r" \frac{m_t}{1 - \beta_1^t} & \text{otherwise} \end{cases}",
    ),
    _torch(
        "adagrad",
        "torch.optim.Adagrad: eps outside the root, accumulator from 0, learning-rate decay.",
        "adagrad",
        {"lr": 0.1},
        rule=COUPLED + r"s_t = s_{t-1} + g_t^2 \\"
        r"p_t = p_{t-1} - \frac{\eta}{1 + (t - 1)\,\text{lr\_decay}} \frac{g_t}{\sqrt{s_t} + \epsilon}",
    ),
    _torch(
        "rmsprop",
        "torch.optim.RMSprop: eps outside the root, the rate outside the momentum buffer.",
        "rmsprop",
        {"lr": 1e-3},
        rule=COUPLED + r"v_t = \alpha v_{t-1} + (1 - \alpha) g_t^2 \\"
        r"b_t = \mu b_{t-1} + \frac{g_t}{\sqrt{v_t - [\bar g_t^2]} + \epsilon}, \quad "
        r"p_t = p_{t-1} - \eta_t b_t",
    ),
    _torch(
        "adadelta",
        "torch.optim.Adadelta (the same defaults as gradtx.adadelta).",
        "adadelta",
        {"lr": 1.0},
    ),
    _torch(
        "rprop",
        "torch.optim.Rprop (Rprop without weight backtracking).",
        "rprop",
        {"lr": 0.01},
    ),
    _torch(
        "asgd",
        "torch.optim.ASGD: SGD with a decaying step and the averaged iterate in the state.",
        None,
        {"lr": 0.01},
        family="schedule_free",
        rule=r"\eta_t = \eta / (1 + \lambda \eta (t - 1))^{\alpha} \\"
        r"p_t = p_{t-1} - \eta_t (g_t + \text{wd}\, p_{t-1} + \lambda p_{t-1}) \\"
        r"a_t = \text{the running mean of } p \text{ after step } t_0",
        papers=(
            _paper(
                "Polyak, Juditsky",
                "Acceleration of Stochastic Approximation by Averaging",
                1992,
                "https://doi.org/10.1137/0330046",
                "SIAM J. Control Optim.",
            ),
        ),
    ),
    _torch(
        "sparse_adam",
        "torch.optim.SparseAdam: Adam's moments and step only where the gradient is present.",
        "adam",
        {"lr": 1e-3},
        rule=r"m_i \leftarrow m_i + (1 - \beta_1)(g_i - m_i), \quad "
        r"v_i \leftarrow v_i + (1 - \beta_2)(g_i^2 - v_i) \quad (\text{rows } i \text{ present}) \\"
        r"p_i \leftarrow p_i - \eta_t \frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t} "
        r"\frac{m_i}{\sqrt{v_i} + \epsilon}",
    ),
    _torch(
        "lbfgs",
        "torch.optim.LBFGS: one update runs one step(closure), up to max_iter iterations.",
        "lbfgs",
        {"max_iter": 5},
        rule=r"d = -H g \quad (\text{two-loop over the last } m \text{ pairs}; d = -g \text{ at first}) \\"
        r"x \leftarrow x + t d \quad (t = \eta, \text{ or torch's strong-Wolfe search}),"
        r" \text{ repeated up to max\_iter times}",
        needs=("params", "value", "grad", "value_fn"),
    ),
    _torch(
        "adafactor",
        "torch.optim.Adafactor: factored over the last two axes, a relative step capped at lr.",
        "adafactor",
        {"lr": 1e-2},
        rule=r"\beta_t = 1 - t^{c}, \quad \rho_t = \min(\eta_t, 1 / \sqrt t) \\"
        r"R_t = \beta_t R + (1 - \beta_t)\,\mathrm{mean}_{-1}(g^2), \quad "
        r"C_t = \beta_t C + (1 - \beta_t)\,\mathrm{mean}_{-2}(g^2), \quad "
        r"V = R_t C_t / \max(\mathrm{mean}(R_t), \epsilon_1) \\"
        r"u = g / \sqrt{\max(V, \epsilon_1^2)}, \quad u \leftarrow u / \max(1, \mathrm{rms}(u) / d) \\"
        r"p \leftarrow p - \rho_t \max(\mathrm{rms}(p), \epsilon_2)\, u - \eta_t \lambda p",
    ),
    _torch(
        "muon",
        "torch.optim.Muon: Newton-Schulz-orthogonalised momentum, for 2-D parameters only.",
        "muon",
        {"lr": 0.02},
        rule=r"b_t = \mu b_{t-1} + (1 - \mu) g_t, \quad d = (1 - \mu) g_t + \mu b_t"
        r" \quad \text{(Nesterov)} \\"
        r"X = \mathrm{NS}_5\left(d / \max(\|d\|_F, \epsilon)\right) \\"
        r"p \leftarrow p - \eta \lambda p - \eta\, \sqrt{\max(1, A / B)}\, X",
        matrix_params=True,
    ),
    _torch(
        "laprop",
        "pytorch_optimizer.LaProp: LaProp as that package has it (rate inside the momentum).",
        "laprop",
        {"lr": 1e-3},
        anchors=("pytorch-optimizer",),
    ),
    _torch(
        "adahessian",
        "pytorch_optimizer.AdaHessian: its names, defaults and numbers (no block averaging).",
        "adahessian",
        {"lr": 0.1},
        anchors=("pytorch-optimizer",),
    ),
    _torch(
        "prodigy",
        "prodigyopt.Prodigy, the authors' package (coupled decay, no bias correction by default).",
        "prodigy",
        {},
        anchors=AUTHORS,
    ),
    _torch(
        "dadapt_adam",
        "dadaptation.DAdaptAdam, the authors' package.",
        "dadapt_adamw",
        {},
        anchors=AUTHORS,
    ),
    _torch(
        "dadapt_sgd",
        "dadaptation.DAdaptSGD, the authors' package: SGD with D-Adaptation's rate.",
        None,
        {},
        family="parameter_free",
        rule=COUPLED + r"\hat\eta = d\, \eta_k / \|g_0\| \\"
        r"r \leftarrow r + \hat\eta \langle g, s \rangle, \quad s \leftarrow s + \hat\eta g \\"
        r"d \leftarrow \max\left(d, \min(2 r / \|s\|_2, \text{growth\_rate}\, d)\right) \\"
        r"p \leftarrow \mu p + (1 - \mu)(p_0 - s)",
        papers=(D_ADAPTATION,),
        needs=("params",),
        anchors=AUTHORS,
    ),
    _torch(
        "dadapt_adagrad",
        "dadaptation.DAdaptAdaGrad, the authors' package: Adagrad with D-Adaptation's rate.",
        None,
        {},
        family="parameter_free",
        rule=COUPLED + r"\hat\eta = d\, \eta_k, \quad \alpha \leftarrow \alpha + g^2 \\"
        r"S \leftarrow S + \|s + \hat\eta g\|_A^2 - \|s\|_A^2, \quad s \leftarrow s + \hat\eta g,"
        r" \quad G \leftarrow G + \hat\eta^2 \|g\|_A^2 \\"
        r"d \leftarrow \max\left(d, \min((S - G) / \|s\|_1, \text{growth\_rate}\, d)\right) \\"
        r"p \leftarrow \mu p + (1 - \mu)\left(p_0 - s / (\sqrt\alpha + \epsilon)\right)",
        papers=(D_ADAPTATION,),
        needs=("params",),
        anchors=AUTHORS,
    ),
    _torch(
        "sgd_schedule_free",
        "schedulefree.SGDScheduleFree, the authors' package.",
        "schedule_free_sgd",
        {"lr": 0.1},
        anchors=("authors' package", "paper oracle"),
    ),
    _torch(
        "adamw_schedule_free",
        "schedulefree.AdamWScheduleFree, the authors' package.",
        "schedule_free_adamw",
        {},
        anchors=AUTHORS,
    ),
    _torch(
        "radam_schedule_free",
        "schedulefree.RAdamScheduleFree, the authors' package: RAdam's rectification as warmup.",
        "schedule_free_adamw",
        {},
        rule=r"\eta_t = \eta\, r_t \quad (r_t \text{ RAdam's rectification, once } \rho_t > 4) \\"
        r"z_t = z_{t-1} - \eta_t \left(\frac{g_t}{\sqrt{v_t / (1 - \beta_2^t)} + \epsilon}"
        r" + \lambda y_{t-1}\right) \\"
        r"x_t = (1 - c_t) x_{t-1} + c_t z_t, \quad y_t = \beta_1 x_t + (1 - \beta_1) z_t",
        papers=(SCHEDULE_FREE, LIU_RADAM),
        anchors=AUTHORS,
    ),
    _keras(
        "sgd",
        "keras.optimizers.SGD: the learning rate sits inside the velocity.",
        "sgd",
        {"learning_rate": 0.1, "momentum": 0.9},
        rule=KERAS_DECAY + r"v_t = \mu v_{t-1} - \eta_t g_t \\"
        r"p_t = p' + v_t \quad (\text{Nesterov: } p' + \mu v_t - \eta_t g_t)",
    ),
    _keras(
        "adam",
        'keras.optimizers.Adam: epsilon added before the bias correction ("epsilon hat").',
        "adam",
        {},
        rule=KERAS_DECAY + r"\alpha_t = \eta_t \sqrt{1 - \beta_2^t} / (1 - \beta_1^t) \\"
        r"p_t = p' - \alpha_t \frac{m_t}{\sqrt{v_t} + \epsilon}",
    ),
    _keras(
        "adamw",
        "keras.optimizers.AdamW: keras.adam with weight decay 0.004 by default.",
        "adamw",
        {},
        rule=KERAS_DECAY + r"\alpha_t = \eta_t \sqrt{1 - \beta_2^t} / (1 - \beta_1^t) \\"
        r"p_t = p' - \alpha_t \frac{m_t}{\sqrt{v_t} + \epsilon}",
    ),
    _keras(
        "adamax",
        "keras.optimizers.Adamax: epsilon added to the norm, outside the max.",
        "adamax",
        {},
        rule=KERAS_DECAY + r"n_t = \max(\beta_2 n_{t-1}, |g_t|) \\"
        r"p_t = p' - \eta_t \frac{m_t}{(1 - \beta_1^t)(n_t + \epsilon)}",
    ),
    _keras(
        "nadam",
        "keras.optimizers.Nadam: Dozat's momentum schedule with 0.96^t.",
        "nadam",
        {},
        rule=KERAS_DECAY
        + r"\mu_t = \beta_1 (1 - \tfrac12 0.96^{t}), \quad P_t = \mu_1 \cdots \mu_t \\"
        r"p_t = p' - \eta_t \frac{\frac{1 - \mu_t}{1 - P_t} g_t + "
        r"\frac{\mu_{t+1}}{1 - P_t \mu_{t+1}} m_t}{\sqrt{v_t / (1 - \beta_2^t)} + \epsilon}",
    ),
    _keras(
        "adagrad",
        "keras.optimizers.Adagrad: eps inside the root, accumulator from 0.1.",
        "adagrad",
        {},
        rule=KERAS_DECAY
        + r"s_t = s_{t-1} + g_t^2, \quad p_t = p' - \eta_t \frac{g_t}{\sqrt{s_t + \epsilon}}",
    ),
    _keras(
        "rmsprop",
        "keras.optimizers.RMSprop: eps inside the root, the rate inside the momentum.",
        "rmsprop",
        {},
        rule=KERAS_DECAY + r"v_t = \rho v_{t-1} + (1 - \rho) g_t^2, \quad "
        r"d_t = \eta_t \frac{g_t}{\sqrt{v_t - [\bar g_t^2] + \epsilon}} \\"
        r"b_t = \mu b_{t-1} + d_t, \quad p_t = p' - b_t",
    ),
    _keras(
        "adadelta",
        "keras.optimizers.Adadelta (default learning rate 0.001, not the paper's 1.0).",
        "adadelta",
        {},
    ),
    _keras(
        "lion",
        "keras.optimizers.Lion (no weight decay by default).",
        "lion",
        {},
    ),
    _keras(
        "ftrl",
        "keras.optimizers.Ftrl: FTRL-Proximal, per coordinate.",
        None,
        {},
        family="adaptive",
        rule=r"n_t = n_{t-1} + g_t^2 \\"
        r"z_t = z_{t-1} + g'_t - \frac{n_t^{-c} - n_{t-1}^{-c}}{\eta_t} p_{t-1}"
        r" \quad (g' = g + 2 \lambda_{shrink} p) \\"
        r"p_t = \frac{\mathrm{clip}(z_t, -\ell_1, \ell_1) - z_t}{n_t^{-c} / \eta_t + 2 \ell_2'}",
        papers=(
            _paper(
                "McMahan, Holt, Sculley, Young, Ebner, Grady, Nie, Phillips, Davydov, Golovin, "
                "Chikkerur, Liu, Wattenberg, Hrafnkelsson, Boulos, Kubica",
                "Ad Click Prediction: a View from the Trenches",
                2013,
                "https://doi.org/10.1145/2487575.2488200",
                "KDD",
            ),
        ),
    ),
    _keras(
        "lamb",
        "keras.optimizers.Lamb: Adam's step scaled per variable by its trust ratio.",
        "lamb",
        {},
        rule=KERAS_DECAY
        + r"r_t = \frac{m_t / (1 - \beta_1^t)}{\sqrt{v_t / (1 - \beta_2^t)} + \epsilon} \\"
        r"p_t = p' - \eta_t \frac{\|p'\|}{\|r_t\|} r_t",
    ),
    _keras(
        "adafactor",
        "keras.optimizers.Adafactor: the last two axes factored, the step capped at 1/sqrt(t).",
        "adafactor",
        {},
        rule=KERAS_DECAY + r"\beta_t = 1 - t^{c}, \quad \rho_t = \min(\eta_t, 1 / \sqrt t) \\"
        r"R_t = \beta_t R + (1 - \beta_t)\,\mathrm{mean}_{-1}(g^2 + \epsilon_1), \quad "
        r"C_t = \beta_t C + (1 - \beta_t)\,\mathrm{mean}_{-2}(g^2 + \epsilon_1) \\"
        r"u = g / \sqrt{(R_t / \mathrm{mean}(R_t)) C_t}, \quad "
        r"u \leftarrow u / \max(1, \mathrm{rms}(u) / d) \\"
        r"p_t = p' - \rho_t \max(\mathrm{rms}(p'), \epsilon_2)\, u",
    ),
    _keras(
        "muon",
        "keras.optimizers.Muon: Newton-Schulz on matrices, Keras's Adam on the rest.",
        "muon",
        {},
        rule=KERAS_DECAY
        + r"m_t = \mu m_{t-1} + g_t, \quad M = g_t + \mu m_t \quad \text{(Nesterov)} \\"
        r"X = \mathrm{NS}_5\left(M / (\|M\|_F + 10^{-7})\right) \\"
        r"p_t = p' - \eta_t\, s \sqrt{\max(\text{rows}, \text{cols})}\, X",
    ),
    _keras(
        "schedule_free_adamw",
        "keras.optimizers.ScheduleFreeAdamW: the uniform average, no learning-rate weights.",
        "schedule_free_adamw",
        {},
        rule=r"y' = y (1 - \lambda \eta) \quad \text{(Keras's decay, first)} \\"
        r"z_t = z_{t-1} - \eta_t \frac{g_t}{\sqrt{v_t / (1 - \beta_2^t)} + \epsilon} \\"
        r"x_t = (1 - \tfrac1t) \frac{y' - (1 - \beta_1) z_{t-1}}{\beta_1} + \frac{z_t}{t}, \quad "
        r"y_t = \beta_1 x_t + (1 - \beta_1) z_t",
    ),
]

#: Every named optimizer, by ``Entry.name``: the core's, then the ports.
CATALOG: Mapping[str, Entry] = types.MappingProxyType({e.name: e for e in [*_CORE, *_PORTS]})
