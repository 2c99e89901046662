"""Membership methods: which feature views an audit needs and how they become one score per real image."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from synthaudit.models import score as scoring
from synthaudit.models.config import DEFAULT_METHOD, AuditConfig


@dataclass(frozen=True)
class View:
    """One way of comparing images: an encoder and a similarity metric."""

    encoder: str
    metric: str = "cosine"

    @property
    def key(self) -> str:
        return f"{self.encoder}-{self.metric}"


@dataclass
class Neighbours:
    """Nearest neighbours of every real image in one view (similarities sorted descending)."""

    rg_sims: np.ndarray  # [N, k] real -> generated
    rg_idx: np.ndarray  # [N, k] indices into the generated set
    rr_sims: np.ndarray  # [N, k] real -> other real images (self excluded)
    rr_idx: np.ndarray  # [N, k]
    gr_sims: np.ndarray  # [M, 2] generated -> real
    gr_idx: np.ndarray  # [M, 2] indices into the real set


@dataclass
class ScoreInputs:
    """Everything a method may look at when it scores the real images."""

    real: np.ndarray  # uint8 [N, S, S]
    generated: np.ndarray  # uint8 [M, S, S]
    neighbours: dict[str, Neighbours] = field(default_factory=dict)


@dataclass
class ScoreOutput:
    """Membership scores (higher = more likely used) and the nearest-generated evidence."""

    scores: np.ndarray  # float64 [N]
    evidence_idx: np.ndarray  # int64 [N, k] generated indices, closest first
    evidence_sims: np.ndarray  # float32 [N, k]


@dataclass(frozen=True)
class Method:
    """A named membership method."""

    name: str
    description: str
    views: Callable[[AuditConfig], tuple[View, ...]]
    score: Callable[[ScoreInputs, AuditConfig], ScoreOutput]


_METHODS: dict[str, Method] = {}
# The method `default` stands for; chosen by benchmarks (docs/benchmarks.md).
DEFAULT_METHOD_TARGET = "density_attribution"


def register_method(method: Method) -> Method:
    """Add a method to the registry."""
    _METHODS[method.name] = method
    return method


def available_methods() -> list[str]:
    """Names accepted by `get_method` (including `default`)."""
    return sorted([*_METHODS, DEFAULT_METHOD])


def methods_text() -> str:
    """The accepted method names in one line, for the CLI's help and the API's schema (one registry)."""
    names = [n for n in available_methods() if n != DEFAULT_METHOD]
    return f"{DEFAULT_METHOD} (= {DEFAULT_METHOD_TARGET}), " + ", ".join(names)


def method_label(chosen: str, resolved: str) -> str:
    """A method under the name the audit was given, and what ran when that differs: "default (=
    density_attribution)" (the CLI's line and the report say it the same way)."""
    return chosen if chosen == resolved or resolved == "?" else f"{chosen} (= {resolved})"


def resolve_method_name(name: str) -> str:
    """Map `default` to the method it currently stands for."""
    return DEFAULT_METHOD_TARGET if name == DEFAULT_METHOD else name


def get_method(name: str) -> Method:
    """Look a method up by name; a clear error names the choices."""
    resolved = resolve_method_name(name)
    if resolved not in _METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(available_methods())}")
    return _METHODS[resolved]


def _max_similarity(view: View) -> Callable[[ScoreInputs, AuditConfig], ScoreOutput]:
    def score(inputs: ScoreInputs, config: AuditConfig) -> ScoreOutput:
        nb = inputs.neighbours[view.key]
        return ScoreOutput(scoring.max_similarity(nb.rg_sims), nb.rg_idx, nb.rg_sims)

    return score


register_method(
    Method(
        name="similarity",
        description="one encoder (--encoder) and metric (--metric); score = similarity to the nearest generated image",
        views=lambda c: (View(c.encoder, c.metric),),
        score=lambda inputs, c: _max_similarity(View(c.encoder, c.metric))(inputs, c),
    )
)
register_method(
    Method(
        name="paper",
        description="the paper's method: MAE global features, cosine, max similarity to the generated set",
        views=lambda c: (View("mae"),),
        score=_max_similarity(View("mae")),
    )
)
register_method(
    Method(
        name="pixels",
        description="baseline: mean-centred raw pixels, cosine, max similarity to the generated set",
        views=lambda c: (View("pixels"),),
        score=_max_similarity(View("pixels")),
    )
)


def _density_attribution(inputs: ScoreInputs, config: AuditConfig) -> ScoreOutput:
    nb = inputs.neighbours[View("pixels_whitened").key]
    scores = scoring.density_attribution_score(nb.rg_sims, nb.rr_sims, nb.gr_sims, nb.gr_idx)
    return ScoreOutput(scores, nb.rg_idx, nb.rg_sims)


register_method(
    Method(
        name="density_attribution",
        description=(
            "the benchmark winner: NCC pixel thumbnails whitened on the audit's own images; rank average of a "
            "kNN density ratio (generated vs other real images) and each generated image's attribution vote"
        ),
        views=lambda c: (View("pixels_whitened"),),
        score=_density_attribution,
    )
)


def _density_attribution_vit(inputs: ScoreInputs, config: AuditConfig) -> ScoreOutput:
    pixels = inputs.neighbours[View("pixels_whitened").key]
    tokens = inputs.neighbours[View("vit_tokens_whitened").key]
    per_view = [
        scoring.density_attribution_score(nb.rg_sims, nb.rr_sims, nb.gr_sims, nb.gr_idx)
        for nb in (pixels, tokens)
    ]
    return ScoreOutput(scoring.rank_fuse(per_view), pixels.rg_idx, pixels.rg_sims)


register_method(
    Method(
        name="density_attribution_vit",
        description=(
            "the default's score, rank-fused with the same score on whitened patch tokens of a seeded, untrained "
            "ViT: better on weakly memorising generators in our benchmarks, about 15x slower on CPU"
        ),
        views=lambda c: (View("pixels_whitened"), View("vit_tokens_whitened")),
        score=_density_attribution_vit,
    )
)
