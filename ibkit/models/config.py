"""Typed model configs: a frozen dataclass per kind, its fields checked on construction against their annotated
types and the ranges in their metadata.

Field metadata (all optional):
    knob:     True for a hyper-parameter that may differ between models trained as one batch (``fit_many``); the
              model holds it as a buffer of that name, it is a results column and part of the run id.
    id:       the short name it takes in a run id ("d" for latent_dim); knobs use their own name by default.
    symbol:   how figures write it ("β").
    help:     what it is, in a few words, for a table's caption ("weight of the rate in the loss").
    low, high, low_open: the allowed range of a number (low_open: strictly above ``low``).
    choices:  the allowed values.
    widths:   a tuple of positive layer widths.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field

from ibkit.checks import check_choice, check_number
from ibkit.models.networks import conv_sizes


@dataclass(frozen=True)
class ModelConfig:
    """What every kind shares: the data and code widths, the networks, the likelihood and the seed."""

    input_dim: int = field(metadata={"low": 1})  # D, width of the data
    latent_dim: int = field(metadata={"low": 1, "id": "d"})  # d, width of the code
    hidden: tuple[int, ...] = field(default=(256, 256), metadata={"widths": True})  # encoder widths; () = linear
    decoder_hidden: tuple[int, ...] | None = field(default=None, metadata={"widths": True})  # None mirrors hidden
    # encoder and decoder: "mlp" (perceptrons of the widths above) or "conv" (stride-2 convolutions of ``channels``
    # on images of ``image_shape`` before the encoder's perceptron, transposed ones after the decoder's)
    network: str = field(default="mlp", metadata={"choices": ("mlp", "conv"), "id": "net"})
    # conv: (C, H, W) of one example; None: (1, s, s) when input_dim = s^2 (784 -> (1, 28, 28))
    image_shape: tuple[int, ...] | None = field(default=None, metadata={"widths": True})
    channels: tuple[int, ...] = field(default=(32, 64), metadata={"widths": True})  # conv: channels per convolution
    likelihood: str = field(default="bernoulli", metadata={"choices": ("bernoulli", "gaussian")})  # p(x|z) family
    scale: float | None = field(default=None, metadata={"low": 0, "low_open": True})  # gaussian: fixed decoder std
    seed: int = field(default=0, metadata={"low": 0})  # seed of the weight initialisation

    def __post_init__(self):
        validate_fields(self)
        if self.decoder_hidden is None:
            object.__setattr__(self, "decoder_hidden", tuple(reversed(self.hidden)))
        if self.network == "conv":
            object.__setattr__(self, "image_shape", check_image_shape(self.image_shape, self.input_dim, self.channels))
        elif self.image_shape is not None:
            raise ValueError(f"image_shape={self.image_shape!r} applies only to network='conv' (an MLP sees the "
                             "flat data); set network='conv' or drop image_shape")
        if self.scale is not None and self.likelihood != "gaussian":
            raise ValueError(f"scale={self.scale!r} applies only to likelihood='gaussian' (a fixed decoder std), not "
                             f"likelihood={self.likelihood!r}")


def check_image_shape(image_shape, input_dim: int, channels: tuple[int, ...]) -> tuple[int, int, int]:
    """The (C, H, W) a conv network sees: ``image_shape``, or (1, s, s) where ``input_dim`` = s^2; refused where it
    does not hold ``input_dim`` numbers or where ``channels``' stride-2 convolutions would halve it below 1x1."""
    if image_shape is None:
        side = math.isqrt(input_dim)
        if side * side != input_dim:
            raise ValueError(f"network='conv' needs image_shape=(C, H, W): input_dim={input_dim} is not a square "
                             "single-channel image")
        image_shape = (1, side, side)
    if len(image_shape) != 3 or math.prod(image_shape) != input_dim:
        raise ValueError(f"image_shape={tuple(image_shape)!r} must be (C, H, W) with C * H * W = input_dim = "
                         f"{input_dim}")
    if not channels:
        raise ValueError("channels=() gives network='conv' no convolution; give at least one, e.g. (32, 64)")
    if min(conv_sizes(tuple(image_shape), tuple(channels))[-1][1:]) < 1:
        raise ValueError(f"channels={channels!r}: {len(channels)} stride-2 convolutions halve image_shape="
                         f"{tuple(image_shape)!r} below 1x1; use at most {int(math.log2(min(image_shape[1:])))}")
    return typing.cast(tuple[int, int, int], tuple(image_shape))


def validate_fields(config) -> None:
    """Check (and normalise: lists to tuples, ints to floats) every field of ``config`` against its annotated type
    and its metadata's range or choices; a ValueError names the field, the value and what is allowed."""
    hints = _hints(type(config))
    for f in dataclasses.fields(config):
        value = _coerce(f.name, getattr(config, f.name), hints[f.name], f.metadata)
        object.__setattr__(config, f.name, value)


_HINTS: dict[type, dict] = {}


def _hints(cls: type) -> dict:
    """The resolved annotations of a config class (cached: they are read at every construction)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _coerce(name: str, value, annotation, meta):
    """``value`` as the type ``annotation`` names (int, float, str, bool, tuple[int, ...], X | None), checked."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(annotation):
            return None
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
        origin = typing.get_origin(annotation)
    if "choices" in meta:
        check_choice(name, value, meta["choices"])
        return value
    if origin is tuple:
        if isinstance(value, (str, int, float)) or not hasattr(value, "__iter__"):
            raise ValueError(f"{name}={value!r} must be a tuple of positive layer widths, e.g. (256, 256), or () "
                             "for a linear map")
        value = tuple(value)
        for v in value:
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}={value!r} must be a tuple of positive layer widths, e.g. (256, 256), "
                                 "or () for a linear map")
        return value
    if annotation in (int, float):
        check_number(name, value, low=meta.get("low"), high=meta.get("high"), low_open=meta.get("low_open", False),
                     integer=annotation is int)
        return int(value) if annotation is int else float(value)
    if annotation is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name}={value!r} must be True or False")
        return value
    if annotation is str and not isinstance(value, str):
        raise ValueError(f"{name}={value!r} must be a string")
    return value


def knob_fields(config_cls) -> tuple[str, ...]:
    """The names of the fields of ``config_cls`` (a config class or instance) marked ``knob``, in declaration
    order."""
    return tuple(f.name for f in dataclasses.fields(config_cls) if f.metadata.get("knob"))


def id_fields(config_cls) -> dict[str, str]:
    """{field: its short name in a run id} for the fields that enter run ids (knobs and fields with an ``id``)."""
    return {f.name: f.metadata.get("id", f.name) for f in dataclasses.fields(config_cls)
            if f.metadata.get("knob") or "id" in f.metadata}


def field_defaults(config_cls) -> dict:
    """{field: its default} for the fields of ``config_cls`` that have one."""
    out = {}
    for f in dataclasses.fields(config_cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def required_fields(config_cls) -> tuple[str, ...]:
    """The fields of ``config_cls`` without a default."""
    return tuple(f.name for f in dataclasses.fields(config_cls)
                 if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)


__all__ = ["ModelConfig", "check_image_shape", "validate_fields", "knob_fields", "id_fields", "field_defaults",
           "required_fields"]
