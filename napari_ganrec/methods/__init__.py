"""The methods, one module each, and the registry: the only list of methods in the project.

===================  ==========================================================================
method               what runs
===================  ==========================================================================
``fbp``              filtered back projection (one step)
``sirt``             SIRT, non-negative
``tv``               TV-regularised least squares, Chambolle-Pock
``rwtv``             reweighted TV (log penalty), Chambolle-Pock with reweighting
``ganrec``           the paper's GAN: generator + discriminator, GAN + lambda*L1, at every iteration
``rwtv+ganrec``      reweighted TV, then GANrec starting from its image (a chain)
``wedgefill``        self-supervised wedge filling (a conv net learns the missing wedge from rotated copies)
``rwtv+wedgefill``   reweighted TV, then wedge filling of its image (a chain)
===================  ==========================================================================

Any ``a+b+...`` of these stages is a chain: each stage starts from the previous stage's image.

Iterations are stated per stage, in one of three ways (see :func:`make_plan`):

- ``iterations=500``: every iterative stage of the chain gets 500 (FBP one step);
- ``iterations={"rwtv": 300, "ganrec": 200}``;
- in the method string: ``method="rwtv:300+ganrec:200"`` (counts there win over ``iterations``).

Options are fields of the stages' configs: ``tv_weight=0.3`` goes to every stage of the chain that
has that field (TV, reweighted TV), ``ganrec={"lr_g": 5e-4}`` to one stage only; a name no stage
of the chain knows is a ``ValueError``. Reweighted TV's ``tv_weight``/``eps`` default to ``"auto"``
(from the data's noise); :meth:`Plan.resolved` chooses them for a sinogram.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .base import Stage, StageConfig
from .fbp import FBP, FILTERS, FBPConfig
from .ganrec import DivergenceError, GANrec, GANrecConfig
from .rwtv import RWTV, RWTVConfig
from .sirt import SIRT, SIRTConfig
from .tv import TV, TVConfig
from .wedgefill import WedgeFill, WedgeFillConfig

__all__ = [
    "MethodInfo", "REGISTRY", "STAGES", "CHAINS", "METHODS", "EXPERIMENTAL", "DEMO_METHODS", "DEFAULT_METHOD",
    "LABELS", "FILTERS",
    "StagePlan", "Plan", "parse_method", "make_plan", "label_of", "Stage", "StageConfig",
    "DivergenceError",
]


@dataclass(frozen=True)
class MethodInfo:
    """One stage in the registry: its class, its config and what it is."""

    name: str
    label: str
    stage: type[Stage]
    config: type[StageConfig]
    summary: str

    @property
    def iterative(self) -> bool:
        return self.stage.iterative


REGISTRY: dict[str, MethodInfo] = {info.name: info for info in (
    MethodInfo("fbp", "FBP", FBP, FBPConfig, "filtered back projection"),
    MethodInfo("sirt", "SIRT", SIRT, SIRTConfig, "simultaneous iterative reconstruction, non-negative"),
    MethodInfo("tv", "TV", TV, TVConfig, "TV-regularised least squares (Chambolle-Pock)"),
    MethodInfo("rwtv", "reweighted TV", RWTV, RWTVConfig,
               "reweighted TV (log penalty), preconditioned primal-dual with reweighting"),
    MethodInfo("ganrec", "GANrec", GANrec, GANrecConfig,
               "the paper's GAN: generator + discriminator, GAN + lambda*L1, every iteration"),
    MethodInfo("wedgefill", "wedge filling", WedgeFill, WedgeFillConfig,
               "self-supervised wedge filling: a conv net learns the missing wedge from rotated copies"),
)}
STAGES: tuple[str, ...] = tuple(REGISTRY)
#: Chains offered by name (any other chain of stages also runs).
CHAINS: dict[str, str] = {"rwtv+ganrec": "reweighted TV, then GANrec starting from its image",
                          "rwtv+wedgefill": "reweighted TV, then self-supervised wedge filling of its image"}
#: What the CLI and the widget offer, in this order.
METHODS: tuple[str, ...] = STAGES + tuple(CHAINS)
#: Research methods (issue 15, docs/experiments.md): offered, but 5-20x slower than reweighted TV
#: and short of their target, so the demo leaves them out unless asked.
EXPERIMENTAL: tuple[str, ...] = ("wedgefill", "rwtv+wedgefill")
#: What the demo compares by default.
DEMO_METHODS: tuple[str, ...] = tuple(m for m in METHODS if m not in EXPERIMENTAL)
#: The recommended method: what wins benchmarks/quality.py (README, docs/experiments.md).
DEFAULT_METHOD = "rwtv"


def label_of(method: str) -> str:
    """What a user reads for ``method``: ``"rwtv+ganrec"`` -> ``"reweighted TV + GANrec"``."""
    return " + ".join(REGISTRY[name].label for name, _ in parse_method(method))



def parse_method(method: str) -> tuple[tuple[str, int | None], ...]:
    """``"rwtv:300+ganrec"`` -> ``(("rwtv", 300), ("ganrec", None))``.

    Raises
    ------
    ValueError
        Not a string, an unknown stage, a bad count, or FBP after another stage.
    """
    if not isinstance(method, str) or not method.strip():
        raise ValueError(f"method must be one of {METHODS} or a chain such as 'rwtv+ganrec', got {method!r}")
    out = []
    for part in method.replace(" ", "").lower().split("+"):
        name, sep, count = part.partition(":")
        if name not in REGISTRY:
            raise ValueError(f"method {method!r}: unknown stage {name!r}; stages are {STAGES}, "
                             "chained with '+' (e.g. 'rwtv+ganrec')")
        n = None
        if sep:
            try:
                n = int(count)
            except ValueError:
                raise ValueError(f"method {method!r}: iterations of {name!r} must be an integer, "
                                 f"got {count!r}") from None
            if n < 1:
                raise ValueError(f"method {method!r}: iterations of {name!r} must be >= 1, got {n}")
        out.append((name, n))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise ValueError(f"method {method!r} names a stage twice")
    if "fbp" in names[1:]:
        raise ValueError(f"method {method!r}: FBP ignores an initial image, so it can only come first")
    return tuple(out)


@dataclass(frozen=True)
class StagePlan:
    """One stage of a run: its name, iteration count and config."""

    name: str
    iterations: int
    config: StageConfig

    @property
    def info(self) -> MethodInfo:
        return REGISTRY[self.name]


@dataclass(frozen=True)
class Plan:
    """A method as it will run: the stages in order, each with its iterations and config."""

    stages: tuple[StagePlan, ...]

    @property
    def name(self) -> str:
        """The method's name: ``"rwtv+ganrec"``."""
        return "+".join(s.name for s in self.stages)

    @property
    def label(self) -> str:
        return " + ".join(s.info.label for s in self.stages)

    @property
    def iterations(self) -> int:
        """Iterations of all stages together."""
        return sum(s.iterations for s in self.stages)

    @property
    def iterative(self) -> bool:
        return any(s.info.iterative for s in self.stages)

    def describe(self, with_config: bool = True) -> dict:
        """``{"method": "rwtv+ganrec", "stages": [{"name": "rwtv", "iterations": 300, ...}, ...]}``
        (what layer metadata and side-cars record)."""
        stages = []
        for s in self.stages:
            d = {"name": s.name, "iterations": s.iterations}
            if with_config:
                d["config"] = s.config.to_dict()
            stages.append(d)
        return {"method": self.name, "stages": stages}

    def resolved(self, sinograms) -> Plan:
        """The same plan with every automatic option chosen for ``sinograms`` (reweighted TV's
        ``tv_weight="auto"``/``eps="auto"``: :meth:`~napari_ganrec.methods.rwtv.RWTVConfig.resolved`),
        so that all slices of a run get one setting and :meth:`describe` records it."""
        out = []
        for s in self.stages:
            resolve = getattr(s.config, "resolved", None)
            out.append(dataclasses.replace(s, config=resolve(sinograms)) if resolve else s)
        return Plan(tuple(out))

    def with_iterations(self, iterations) -> Plan:
        """The same stages and configs with other iteration counts (int or ``{stage: n}``)."""
        counts = _counts([(s.name, None) for s in self.stages], iterations, "warm_iterations")
        return Plan(tuple(dataclasses.replace(s, iterations=counts[s.name]) for s in self.stages))


def _positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        try:
            import numpy as np

            if isinstance(value, np.integer) and value >= 1:
                return int(value)
        except ImportError:  # pragma: no cover
            pass
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _counts(parsed, iterations, argname: str) -> dict[str, int]:
    names = [n for n, _ in parsed]
    if isinstance(iterations, str):
        spec = dict(parse_method(iterations)) if ":" in iterations else None
        if spec is None or any(v is None for v in spec.values()):
            raise ValueError(f"{argname} as a string must read like 'rwtv:300+ganrec:200', got {iterations!r}")
        iterations = spec
    if isinstance(iterations, Mapping):
        unknown = sorted(set(iterations) - set(names))
        if unknown:
            raise ValueError(f"{argname} names stage(s) {unknown} that are not in the method {'+'.join(names)!r}")
        per = {k: _positive(f"{argname}[{k!r}]", v) for k, v in iterations.items()}
        default = None
    elif iterations is None:
        per, default = {}, None
    else:
        per, default = {}, _positive(argname, iterations)
    out = {}
    for name, count in parsed:
        if not REGISTRY[name].iterative:
            out[name] = 1
        elif count is not None:
            out[name] = count
        elif name in per:
            out[name] = per[name]
        elif default is not None:
            out[name] = default
        else:
            raise ValueError(f"{argname} gives no count for the stage {name!r}")
    return out


def make_plan(method: str | Plan = DEFAULT_METHOD, iterations: int | Mapping[str, int] | str | None = 1000,
              options: Mapping[str, Any] | None = None) -> Plan:
    """The :class:`Plan` of ``method`` (see the module docstring for ``iterations`` and ``options``).

    Raises
    ------
    ValueError
        Unknown method or stage, a bad iteration count, an option no stage knows, a value out of range.
    """
    if isinstance(method, Plan):
        if options:
            raise ValueError("options cannot be combined with a ready Plan")
        return method
    parsed = parse_method(method)
    counts = _counts(parsed, iterations, "iterations")
    options = dict(options or {})
    per_stage: dict[str, dict] = {name: {} for name, _ in parsed}
    for name, _ in parsed:
        given = options.pop(name, None)
        if given is None:
            continue
        if isinstance(given, StageConfig):
            if not isinstance(given, REGISTRY[name].config):
                raise ValueError(f"options[{name!r}] must be a {REGISTRY[name].config.__name__}")
            per_stage[name] = given
            continue
        if not isinstance(given, Mapping):
            raise ValueError(f"options[{name!r}] must be a dict of {name} options, got {type(given).__name__}")
        per_stage[name] = dict(given)
    for key in [k for k in options if k in REGISTRY]:
        raise ValueError(f"options for the stage {key!r}, which is not in the method {method!r}")
    for key, value in options.items():
        takers = [n for n, _ in parsed if key in _field_names(REGISTRY[n].config)]
        if not takers:
            known = sorted({f for n, _ in parsed for f in _field_names(REGISTRY[n].config)})
            raise ValueError(f"unknown option {key!r} for method {method!r}; its stages take {known}")
        for n in takers:
            if isinstance(per_stage[n], dict):
                per_stage[n].setdefault(key, value)
    stages = []
    for name, _ in parsed:
        info = REGISTRY[name]
        given = per_stage[name]
        if isinstance(given, StageConfig):
            cfg = given
        else:
            unknown = sorted(set(given) - _field_names(info.config))
            if unknown:
                raise ValueError(f"unknown {name} option(s) {unknown}; known: {sorted(_field_names(info.config))}")
            cfg = info.config(**given)
        stages.append(StagePlan(name, counts[name], cfg))
    return Plan(tuple(stages))


LABELS: dict[str, str] = {m: label_of(m) for m in METHODS}


def _field_names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


from .chain import ChainStep, Convergence, build_stage, iter_chain  # noqa: E402  (needs Plan)

__all__ += ["ChainStep", "Convergence", "build_stage", "iter_chain"]
