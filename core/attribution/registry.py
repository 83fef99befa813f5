"""The attribution-method registry: what each method is, its parameters and how to call it.

Widgets build their controls from ``ParamSpec`` (sliders for int/float, dropdowns for choices,
checkboxes for bools); ``explain`` validates user parameters against the same specs.

A method function has the signature::

    fn(forward, inputs, target, *, baseline, layer, **params) -> Tensor

``forward`` is an ``nn.Module`` returning logits ``(n, K)`` (the user's model wrapped by
``as_logits``, already in eval mode); ``inputs`` ``(n, C, H, W)`` float on the model's device;
``target`` ``LongTensor (n,)``; ``baseline`` ``(n, C, H, W)`` (None for single-pass methods
when the caller gave none); ``layer`` a resolved ``LayerProposal`` when ``needs_layer`` else
None; stochastic methods also get ``seeds``: one int per image, derived from the user's seed
and that image's content (``explain.image_seed``), so an image's noise does not depend on its
batch. It returns ``(n, C, H, W)`` attributions, or ``(n, 1, h, w)`` when the method's map is
shared by all channels (occlusion, ablation, CAMs); ``explain`` upsamples ``h, w`` to ``H, W``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Literal

from .postprocess import MAP_KINDS

__all__ = [
    "METHODS",
    "MethodSpec",
    "ParamSpec",
    "available_methods",
    "method_spec",
    "register_method",
]

ParamKind = Literal["int", "float", "choice", "bool"]


@dataclass(frozen=True)
class ParamSpec:
    """One method parameter: its default and the range/choices a control may offer."""

    name: str
    default: Any
    kind: ParamKind
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: tuple[Any, ...] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("int", "float", "choice", "bool"):
            raise ValueError(
                f"kind: expected 'int', 'float', 'choice' or 'bool', got {self.kind!r}"
            )
        if self.kind == "choice" and not self.choices:
            raise ValueError(f"choices: parameter {self.name!r} of kind 'choice' needs choices")
        self.validate(self.default)

    def validate(self, value: Any, method: str = "") -> Any:
        """Return ``value`` coerced to this parameter's kind, or raise naming the parameter."""
        where = f"{self.name} (method {method!r})" if method else self.name
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise TypeError(f"{where}: expected a bool, got {value!r}")
            return value
        if self.kind == "choice":
            if value not in self.choices:  # type: ignore[operator]
                raise ValueError(f"{where}: expected one of {list(self.choices)}, got {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{where}: expected {'an int' if self.kind == 'int' else 'a number'}, "
                            f"got {value!r}")
        if self.kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise TypeError(f"{where}: expected an int, got {value!r}")
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(f"{where}: expected a finite number, got {value!r}")
        if (self.min is not None and value < self.min) or (
            self.max is not None and value > self.max
        ):
            raise ValueError(
                f"{where}: expected a value in [{self.min}, {self.max}], got {value!r}"
            )
        return value


@dataclass(frozen=True)
class MethodSpec:
    """A registered attribution method.

    ``multiplies_by_input``: the map is gradient x (input - baseline)-like (so it is zero where the
    input equals the baseline). ``needs_layer``: a hidden-layer method (Grad-CAM family).
    ``signed``: the map carries a meaningful sign. ``stochastic``: takes ``seeds`` (see module doc).
    ``single_pass``: the method runs the model once, on the unmodified inputs (gradient-only
    methods, the Grad-CAM family), so a predicted-class explanation can take the prediction from
    that same forward pass (see ``explain_predicted``); they take no baseline, so ``explain``
    passes ``baseline=None`` unless the caller gave one. ``notes``: where the method is exact and
    where it is not (shown to users). ``caveat``: called by ``explain`` with the model's modules;
    a returned message is issued as a ``UserWarning`` (e.g. DeepLIFT on modules its rules do not
    cover). ``map_kind``: ``"cam"`` (class activation map of a hidden layer), ``"gradient"``
    (input attribution built from gradients) or ``"perturbation"`` (occlusion, ablation), one of
    ``postprocess.MAP_KINDS``; the ``postprocess="paper"`` convention picks the COSE paper's
    scaling by it (min-max for CAMs, PAIR grayscale for gradients). Default: ``"cam"`` for
    layer methods, else ``"gradient"``.
    """

    name: str
    label: str
    fn: Callable[..., Any] = field(repr=False, compare=False)
    _: KW_ONLY  # everything after the function by name: registrations read as a table
    params: tuple[ParamSpec, ...] = ()
    multiplies_by_input: bool = False
    needs_layer: bool = False
    signed: bool = True
    description: str = ""
    stochastic: bool = False
    single_pass: bool = False
    notes: str = ""
    caveat: Callable[[list[Any]], str | None] | None = field(default=None, repr=False,
                                                              compare=False)
    map_kind: str = ""

    def __post_init__(self) -> None:
        if not self.map_kind:
            object.__setattr__(self, "map_kind", "cam" if self.needs_layer else "gradient")
        if self.map_kind not in MAP_KINDS:
            raise ValueError(f"map_kind: expected one of {list(MAP_KINDS)}, got "
                             f"{self.map_kind!r} (method {self.name!r})")

    def param(self, name: str) -> ParamSpec:
        for spec in self.params:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def resolve_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overridden by ``params``; unknown names and bad values raise."""
        known = {p.name: p for p in self.params}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ValueError(
                f"params: method {self.name!r} has no parameter(s) {unknown}; it accepts "
                f"{sorted(known) or 'no parameters'}"
            )
        out = self.defaults
        for name, value in params.items():
            out[name] = known[name].validate(value, self.name)
        return out


METHODS: dict[str, MethodSpec] = {}
"""Registered methods by name (insertion order = display order). Use ``register_method``."""


def register_method(spec: MethodSpec, *, replace: bool = False) -> MethodSpec:
    """Add ``spec`` to ``METHODS`` (``replace=True`` to overwrite an existing name)."""
    if not isinstance(spec, MethodSpec):
        raise TypeError(f"spec: expected a MethodSpec, got {type(spec).__name__}")
    if not callable(spec.fn):
        raise TypeError(f"spec.fn: expected a callable, got {type(spec.fn).__name__}")
    if spec.name in METHODS and not replace:
        raise ValueError(f"spec.name: method {spec.name!r} is already registered "
                         "(pass replace=True to overwrite)")
    METHODS[spec.name] = spec
    return spec


def available_methods() -> list[str]:
    """Names of the registered methods, in display order."""
    return list(METHODS)


def method_spec(name: str) -> MethodSpec:
    """The ``MethodSpec`` registered as ``name``; unknown names list the available ones."""
    if isinstance(name, MethodSpec):
        return name
    if not isinstance(name, str):
        raise TypeError(f"method: expected a method name (str), got {type(name).__name__}")
    try:
        return METHODS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(METHODS), n=3, cutoff=0.5)
        hint = f" (did you mean {close}?)" if close else ""
        raise ValueError(
            f"method: unknown attribution method {name!r}{hint}; available: {list(METHODS)}"
        ) from None
