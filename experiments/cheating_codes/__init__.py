"""Can a deterministic code of one real number cheat with something like modulo, and what stops it?

Two halves (issue "something like modulo"):

- **The constructed cheat.** For every trained d-unit deterministic AE (``code_dims``, 1 to 8), ``interleave``
  packs its d coordinates, quantised to L levels (``levels``, 2 to 256), into one real number of each ``dtypes``
  (float32, float64). Each packed code's distortion is held against the quantised d-unit code's, with the share of
  rows it reconstructs bit for bit, and its information through probes of sigma (``probe_sigmas``, 1 to 1e-12)
  against the closed form min(log N, d log L, mantissa bits log 2, log(1 / sigma) - 1/2 log(2 pi e)): a code on
  [0, 1) carries what its digits hold until the probe's noise drowns them.
- **Does training find it?** One-unit codes whose decoder reads periodic features of z (``periodic_ae``: Fourier
  or sawtooth features with learned frequencies) beside the plain one-unit AE and the d-unit AEs of the same width:
  distortion, probe information and how often the decoder folds the code line over the data
  (``E.decoder_folds``).

runs.csv: one test row per trained model. Side tables: ``packed.csv`` (per AE, L, dtype and sigma) and
``probe_curves.csv`` (per trained model and sigma). The package: this module, ``figures`` and ``findings``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import torch

import ibkit
from ibkit import estimators as E
from ibkit.config import ExperimentConfig, RunSpec, setting
from ibkit.models import interleave
from ibkit.models.interleaved import DTYPES, MANTISSA_BITS
from ibkit.models.periodic_ae import FEATURES
from ibkit.sweep import TABLES, run_grid

if TYPE_CHECKING:
    import pandas as pd

NAME = "cheating-codes"
SUMMARY = "one real number packing d digits (interleaving, modulo) vs what training finds with periodic decoders"
PACKED, CURVES = "packed", "probe_curves"


@dataclass(frozen=True)
class Config(ExperimentConfig, defaults=dict(epochs=100)):
    """The codes, packings and probes; data, networks and training are ``ExperimentConfig``'s fields."""

    ACCEPTS = ("digits", "mnist")

    code_dims: tuple[int, ...] = setting((1, 2, 4, 8), "d of the trained deterministic AEs (1 is the plain one-unit "
                                         "code)", low=1, nonempty=True)
    levels: tuple[int, ...] = setting((2, 4, 16, 64, 256), "L, quantisation levels per coordinate of a packed code",
                                      low=2, high=2**16, nonempty=True)
    dtypes: tuple[str, ...] = setting(tuple(DTYPES), "the precision of the packed real number", choices=tuple(DTYPES),
                                      nonempty=True)
    features: tuple[str, ...] = setting(FEATURES, "periodic decoders of one-unit codes: fourier | sawtooth",
                                        choices=FEATURES)
    frequencies: int = setting(16, "K, learned frequencies of a periodic decoder", low=1)
    max_frequency: float = setting(64.0, "the largest starting frequency of a periodic decoder", low=1)
    probe_sigmas: tuple[float, ...] = setting((1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-6, 1e-8, 1e-10, 1e-12),
                                              "probe noise stds", low=0, low_open=True, nonempty=True)
    eval_rows: int = setting(1000, "test rows of the probes (N^2 pairs) and the distortion", low=2)


GROWS = ("seeds",)
QUICK = dict(code_dims=(1, 4), levels=(4, 64, 256), epochs=30, seeds=(0,), eval_rows=300,
             probe_sigmas=(1e-1, 1e-4, 1e-12))


def model_grid(config: Config) -> list[RunSpec]:
    """The d-unit AEs and the periodic one-unit AEs, for every seed."""
    common = dict(hidden=config.hidden)
    models = [("ae", dict(latent_dim=d)) for d in config.code_dims]
    models += [("periodic_ae", dict(latent_dim=1, features=f, frequencies=config.frequencies,
                                    max_frequency=config.max_frequency)) for f in config.features]
    return [RunSpec(kind, {**common, **fields}, seed) for seed in config.seeds for kind, fields in models]


def theory(log_n: float, bits: float, dtype: str, sigma: float) -> float:
    """min(log N, d log L, mantissa bits log 2, log(1 / sigma) - 1/2 log(2 pi e)) nats: what a packed code on [0, 1)
    can carry through a probe of std sigma (``bits`` = d log2 L)."""
    return min(log_n, bits * math.log(2), MANTISSA_BITS[dtype] * math.log(2),
               -math.log(sigma) - 0.5 * math.log(2 * math.pi * math.e))


def _curve(model, x, sigmas) -> pd.DataFrame:
    return E.probe_curve(model, x, sigmas=sigmas)[["sigma", "infonce", "infonce_se", "log_n"]]


def packed_rows(model, spec: RunSpec, *, config: Config, train, x) -> pd.DataFrame:
    """Every packing of a trained d-unit AE: its distortion beside the quantised d-unit code's, the rows it
    reconstructs bit for bit, and its probe curve beside the closed form."""
    import pandas as pd

    rows = []
    distinct = torch.unique(x, dim=0, return_counts=True)[1].double() / len(x)  # binary images repeat
    data_entropy = -(distinct * distinct.log()).sum().item()  # no code of these rows carries more
    for levels in config.levels:
        for dtype in config.dtypes:
            packed = interleave(model, levels, dtype, x=train)
            with torch.no_grad():
                quantised, z = packed.quantise(model.encode(x)), packed.encode(x)
                exact = (packed.decode(z) == model.decode(quantised)).all(-1).double().mean().item()
                quantised_distortion = -model.log_likelihood(x, quantised).mean().item()
                share = torch.unique(z, return_counts=True)[1].double() / len(x)  # the reals' shares
            bits = model.latent_dim * math.log2(levels)
            common = dict(run_id=spec.run_id, seed=spec.seed, code_dim=model.latent_dim, levels=levels, dtype=dtype,
                          bits=bits, fits=packed.fits, exact=exact, distortion=E.distortion(packed, x),
                          quantised_distortion=quantised_distortion, code_entropy=-(share * share.log()).sum().item(),
                          data_entropy=data_entropy)
            for _, c in _curve(packed, x, config.probe_sigmas).iterrows():
                rows.append({**common, **c.to_dict(), "theory": theory(c["log_n"], bits, dtype, c["sigma"])})
    # code_entropy: H of the packed reals over these rows, what InfoNCE reaches as sigma -> 0 (rows that share a
    # cell, or a rounded real, are one point to the probe); theory: the ceiling min(log N, d log L, ...)
    return pd.DataFrame(rows)


def evaluate(model, spec: RunSpec, *, config: Config, train, x) -> dict:
    """A trained code's distortion, MSE, probe curve and (one unit) folds; a d-unit AE's packings (side tables)."""
    curve = _curve(model, x, config.probe_sigmas)
    smallest = curve.loc[curve["sigma"].idxmin()]
    m = dict(distortion=E.distortion(model, x), mse=E.mse(model, x), code_dim=model.latent_dim,
             features=spec.get("features") or "", infonce=smallest["infonce"], infonce_se=smallest["infonce_se"],
             probe_sigma=smallest["sigma"], log_n=smallest["log_n"])
    if model.latent_dim == 1:
        m.update({f"folds_{k}": v for k, v in E.decoder_folds(model, train).items() if k != "grid"})
    tables = {CURVES: curve.assign(run_id=spec.run_id, seed=spec.seed, kind=spec.kind, code_dim=model.latent_dim,
                                   features=m["features"])}
    if spec.kind == "ae":
        tables[PACKED] = packed_rows(model, spec, config=config, train=train, x=x)
    return {"test": m, TABLES: tables}


def run(config: Config, out_dir: str | Path | None = None, executor=None) -> pd.DataFrame:
    """Train every code of the grid, then measure it and its packings on the first ``eval_rows`` test rows."""
    ds = ibkit.data.load(config.dataset)
    x = ds.test[: config.eval_rows]
    return run_grid(NAME, ds, model_grid(config), partial(evaluate, config=config, train=ds.train, x=x),
                    config.training, out_dir=out_dir, executor=executor)


def plot(run_dir: str | Path, command: str | Sequence[str] | None = None) -> list[Path]:
    """The figures and findings.md, from runs.csv, packed.csv and probe_curves.csv."""
    from ibkit import plots

    from .figures import packed_codes, trained_codes
    from .findings import write_findings

    run_dir = Path(run_dir)
    runs = ibkit.results.load(run_dir)
    packed = ibkit.results.side_table(run_dir, PACKED)
    curves = ibkit.results.side_table(run_dir, CURVES)
    figures, data = run_dir / "figures", ibkit.results.data_text(run_dir)
    paths = plots.save_figure(packed_codes(packed), figures, "packed_codes", data=data)
    paths += plots.save_figure(trained_codes(runs, curves), figures, "trained_codes", data=data)
    return paths + [ibkit.results.write_findings(run_dir, write_findings(runs, packed), command)]
