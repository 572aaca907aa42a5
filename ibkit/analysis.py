"""One trained model to a report: ``analyse(model, x, labels=None)`` in Python, ``ibkit analyse`` at the command line.

The model is any protocol model (an ibkit checkpoint, ``ibkit.wrap`` around plain modules, a pythae model through
``ibkit.adapters.pythae``) or a deterministic code. The report measures it on the rows of x, every number in nats
with its standard error over the rows (the spread of the per-example values / sqrt N; the bounds' own):

    rate, distortion, ELBO      E_x KL(q(z|x) || p(z)), -E_x E_q log p(x|z), -(D + R)
    iwae                        the importance-weighted bound on log p(x) with k samples (first ``iwae_rows`` rows)
    mi_lower <= I(X;Z) <= mi_upper   ``E.information_bracket`` on the first ``eval_rows`` rows (InfoNCE <= log N;
                                the smaller of leave-one-out and the rate above; a deterministic code: through a
                                probe channel below, unbounded above)
    active units, KL per dimension (diagonal posteriors), the probe curve (deterministic codes), the per-layer
    table (hierarchical models) and the label information (with ``labels``).

A model with q(z|x) and p(z) but no ``log_likelihood`` gets every number that needs only those (rate, the bracket,
KL per dimension, active units, label information); distortion, ELBO and IWAE are NaN and ``likelihood_note``, in
the row and the report, says why (the estimators themselves refuse such a model with a ValueError).

``Analysis.write(out)`` stores ``runs.csv`` (one row in the results schema), ``report.md``, the side tables, a
``manifest.json`` (command, git state, environment: ``ibkit compare`` puts reports side by side) and the figures:
the model's point on the rate-distortion plane beside the committed reference frontier of its dataset
(``results/rate_distortion`` for digits, ``results/rate_distortion_mnist`` for MNIST) where one is at hand, and the
bracket, KL per dimension, probe curve and label information where they apply (drawn by ``ibkit.plots``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from ibkit import estimators as E
from ibkit.checks import check_number
from ibkit.config import all_knobs
from ibkit.estimators._common import has_likelihood, missing_likelihood, remembering
from ibkit.estimators.columns import column_help, registered_columns
from ibkit.interface import is_stochastic
from ibkit.prose import bracket_text
from ibkit.registry import COLUMNS
from ibkit.stats import round_to_uncertainty

if TYPE_CHECKING:
    import pandas as pd

PROBE_SIGMAS = (1.0, 0.1, 1e-2, 1e-3, 1e-4)  # the probe curve of a deterministic code
IMAGE_ROWS = (("rate  [bits per pixel]", "rate_bpp"), ("PSNR  [dB, peak 1]", "psnr"),
              ("ideal bits of the rounded latent  [bits per pixel]", "ideal_bpp"),
              ("real bits of net.compress  [bits per pixel]", "real_bpp"))  # image models' rows of the report


@dataclass
class Analysis:
    """What ``analyse`` measured.

    Attributes:
        row: the results-schema row (with ``_se`` columns).
        tables: the side tables (kl_per_dim, probe_curve, per_layer, label_information, where they apply).
        name: the model's label (the row's ``run_id``).
        dataset: the data's label; "" for the given rows.
        rate_map: an image model's first image [C, H, W] and its rate map [h, w] (nats per latent position), drawn
            by ``write``; None for other models.
    """

    row: dict
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    name: str = "model"
    dataset: str = ""
    rate_map: tuple[Tensor, Tensor] | None = None

    def value(self, metric: str) -> str:
        """'4.31 ± 0.12' (mean ± one standard error), '∞' for a bound that does not exist, '–' for none.

        Args:
            metric: a column of ``row`` (its standard error is ``{metric}_se``).

        Returns:
            the value rounded to its uncertainty, as text.
        """
        mean, se = self.row.get(metric, math.nan), self.row.get(f"{metric}_se", math.nan)
        if mean == math.inf:
            return "∞"
        return round_to_uncertainty(mean, se)

    def report(self) -> str:
        """report.md: the headline numbers, what they say, and the side tables.

        Returns:
            the report, markdown.
        """
        r, stochastic = self.row, not math.isnan(self.row.get("rate", math.nan))
        iwae_rows = "" if _missing(r.get("iwae")) else f"IWAE on {r['iwae_rows']}, "
        lines = [f"# Analysis of {self.name}", "",
                 f"Data: {self.dataset or 'the given rows'}, {r['rows']} rows ({iwae_rows}the "
                 f"I(X;Z) bracket on {r['eval_rows']}). Nats per example; ± one standard error over the rows.", "",
                 "| quantity | value |", "|---|---|"]
        names = [("rate R", "rate"), ("distortion D", "distortion"), ("ELBO", "elbo"),
                 (f"IWAE log p(x) bound (k = {r['k']})", "iwae"), ("I(X;Z) lower bound", "mi_lower"),
                 ("I(X;Z) upper bound", "mi_upper"), ("mean squared error", "mse")]
        lines += [f"| {label} | {self.value(key)} |" for label, key in names if not _missing(r.get(key))]
        if not _missing(r.get("code_length")):
            lines += [f"| code length (bits-back stream on the IWAE rows, nats per example) | "
                      f"{r['code_length']:.4g} ({r['code_length_ratio']:.4f} × −ELBO) |"]
        lines += [f"| {label} | {self.value(key)} |" for label, key in IMAGE_ROWS if not _missing(r.get(key))]
        lines += [f"| active units | {r['active_units']} of {r['latent_dim']} |"]
        lines += [f"| {column_help(name) or name} | {r[name]:.4g} |" for name in COLUMNS if name in r] + [""]
        lines += self._sentences(stochastic)
        if r.get("likelihood_note"):  # a model without log p(x|z): what was left out, and why
            lines += ["", f"{r['likelihood_note'][0].upper()}{r['likelihood_note'][1:]}."]
        if not _missing(r.get("logvar_clamped")) and r["logvar_clamped"] > 0:
            lines += ["", f"diffusers clamped {r['logvar_clamped']:.2%} of the posterior's log variances to [-30, 20]: "
                          "the posterior measured is the clamped one, as diffusers samples and scores it."]
        for title, name in (("KL per dimension", "kl_per_dim"), ("Per layer", "per_layer"),
                            ("Probe curve", "probe_curve"), ("Label information", "label_information"),
                            ("Per latent channel (the ten largest rates)", "channel_rates"),
                            ("Coded bits per image (the first ten)", "compressed_bits")):
            if name in self.tables:
                table = self.tables[name]
                shown = table.nlargest(10, "rate") if name == "channel_rates" else table.head(10)
                lines += ["", f"## {title}", "", _markdown(shown)]
        if "compressed_bits" in self.tables:
            lines += ["", "rate: ibkit's KL, the expected code length of the noisy latent; ideal: the rounded latent's "
                          "bits under the same entropy model (the codec's likelihood bpp); real: the length of "
                          "net.compress's strings (the file-size bpp). Bits per image, and per pixel (bpp)."]
        return "\n".join(lines) + "\n"

    def _sentences(self, stochastic: bool) -> list[str]:
        r = self.row
        log_n = f"log N = {r['log_n']:.3g}"
        if stochastic:
            bracket = bracket_text([r["mi_lower"]], [r["mi_upper"]], [r["mi_lower_se"]], [r["mi_upper_se"]])
            text = (f"I(X;Z), the information the code carries about x, is {bracket} nats (95% intervals; InfoNCE "
                    f"cannot exceed {log_n}); the rate {self.value('rate')} bounds it from above" +
                    ("." if _missing(r.get("iwae")) else f", and log p(x) >= {self.value('iwae')} (IWAE)."))
            if r.get("mi_upper_note"):
                text += f" The upper bound is the {r['mi_upper_note']}."
            if r["mi_lower"] > r["log_n"] - 0.1:
                text += f" The lower bound sits at its ceiling {log_n}: more rows would be needed to see above it."
        else:
            text = (f"A deterministic code: no upper bound on I(X;Z) exists ({r['mi_upper_note']}). Through a probe "
                    f"channel of std {r['probe_sigma']:g} it carries at least {self.value('mi_lower')} nats "
                    f"({log_n} at most)")
            if not _missing(r.get("probe_upper")):
                how = r.get("probe_upper_note") or "the smallest of the probe channel's leave-one-out bound, rate " \
                    "and capacity"
                text += f" and at most {self.value('probe_upper')} ({how})"
            text += "; the probe curve shows it growing as the probe noise shrinks."
        if not _missing(r.get("label_accuracy")):
            drawn = "z ~ q(z|x)" if stochastic else "the code itself"
            text += (f" The label: a logistic-regression probe on the code that crosses the channel ({drawn}) "
                     f"scores {r['label_accuracy']:.3f} (chance {r['label_chance']:.3f}); per-dimension I(z_k; label) "
                     f"below the noise floor {r['label_mi_noise']:.2f} nats is not told apart from 0, and none can "
                     "exceed I(X;Z).")
        return [text]

    def write(self, out: str | Path) -> list[Path]:
        """runs.csv, report.md, a CSV per side table and the figures (PNG and PDF) into ``out``; returns the paths.

        Args:
            out: the folder, made if missing; its manifest.json is written last.

        Returns:
            the paths written.
        """
        import pandas as pd

        from ibkit import plots
        from ibkit.store import RunFolder, atomic_write_text

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / "runs.csv", out / "report.md"]
        atomic_write_text(paths[0], pd.DataFrame([self.row]).to_csv(index=False))
        for name, table in self.tables.items():
            atomic_write_text(out / f"{name}.csv", table.to_csv(index=False))
            paths.append(out / f"{name}.csv")
        figures, data = out / "figures", f"{self.dataset or 'the given rows'}, {self.row['rows']} rows"
        if not _missing(self.row.get("distortion")):  # without log p(x|z) the model has no point on the plane
            paths += plots.save_figure(plots.plane_figure(self), figures, "rate_distortion", data=data)
        paths += plots.save_figure(plots.bracket_figure(self), figures, "information", data=data)
        if "kl_per_dim" in self.tables:
            paths += plots.save_figure(plots.kl_figure(self.tables["kl_per_dim"]), figures, "kl_per_dim", data=data)
        if "probe_curve" in self.tables:
            paths += plots.save_figure(plots.probe_figure(self), figures, "probe_curve", data=data)
        if "label_information" in self.tables:
            paths += plots.save_figure(plots.label_figure(self), figures, "label_information", data=data)
        if "channel_rates" in self.tables:
            paths += plots.save_figure(plots.channel_figure(self.tables["channel_rates"]), figures, "channel_rates",
                                       data=data)
        if self.rate_map is not None:
            paths += plots.save_figure(plots.rate_map_figure(*self.rate_map, title=f"{self.name}, image 0"), figures,
                                       "rate_map", data=data)
        atomic_write_text(paths[1], self.report() + "\n## Figures\n\n" + "".join(
            f"![{p.stem}](figures/{p.name})\n\n" for p in paths if p.suffix == ".png"))
        # last: a folder with a manifest is whole (ibkit compare reads it): the command, git state and environment
        paths.append(RunFolder(out).write_manifest(experiment="analyse", name=self.name, data={
            "name": self.dataset or "the given rows", "split": f"{self.row['rows']:,} rows"}))
        return paths


def analyse(model, x, labels=None, *, k: int = 1000, seed: int = 0, eval_rows: int = 2000, iwae_rows: int = 1000,
            name: str = "model", dataset: str = "", allow_long: bool = False) -> Analysis:
    """Measure one trained ``model`` on the rows of x [N, D] (module docstring); ``labels`` [N] adds the label
    information. Returns an ``Analysis``; ``.write(out)`` stores the report, the table and the figures. An IWAE
    whose k x iwae_rows decoder passes would take more than an hour is refused (a ValueError naming the estimate)
    unless ``allow_long``.

    Args:
        model: a protocol model (``ibkit.interface``) or a deterministic code (``encode``).
        x: [N, D] data in the model's support (a tensor or array).
        labels: [N] class labels, or None.
        k: importance samples per row of the IWAE bound.
        seed: seeds every estimator's draws.
        eval_rows: the first rows the information bracket, probe curve and per-layer table use, >= 2.
        iwae_rows: the first rows the IWAE bound uses.
        name: the model's label in the row and the report.
        dataset: the data's label in the row and the report.
        allow_long: run an IWAE estimated to take more than an hour instead of refusing it.

    Returns:
        the ``Analysis``: ``row`` and the side ``tables``.

    Raises:
        ValueError: labels without one per row, an argument out of range, or the estimators' own refusals.
    """
    check_number("k", k, low=1, integer=True)
    check_number("eval_rows", eval_rows, low=2, integer=True)
    check_number("iwae_rows", iwae_rows, low=1, integer=True)
    x = torch.as_tensor(x, dtype=torch.float32)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (len(x),):
            raise ValueError(f"labels has shape {list(labels.shape)}; it needs one label per row of x, [{len(x)}]")
    model = model.eval() if isinstance(model, torch.nn.Module) else model
    with remembering(model):  # one encoder pass per rows across the estimators (an image encoder is dear)
        return _measure(model, x, labels, k=k, seed=seed, eval_rows=eval_rows, iwae_rows=iwae_rows, name=name,
                        dataset=dataset, allow_long=allow_long)


def _measure(model, x: Tensor, labels, *, k: int, seed: int, eval_rows: int, iwae_rows: int, name: str, dataset: str,
             allow_long: bool) -> Analysis:
    """``analyse``'s measurements, its arguments checked."""
    import pandas as pd

    stochastic = is_stochastic(model)
    row: dict = dict(experiment="analyse", run_id=name, dataset=dataset, kind=getattr(model, "KIND", "") or
                     type(model).__name__, posterior=_family(model), seed=seed, split="test", rows=len(x), k=k,
                     eval_rows=min(eval_rows, len(x)), iwae_rows=min(iwae_rows, len(x)), status="ok")
    config = getattr(model, "config", None)  # an ibkit model's knobs; NaN for others, as in any results table
    row.update({knob: math.nan if getattr(config, knob, None) is None else float(getattr(config, knob))
                for knob in all_knobs()})
    tables: dict[str, pd.DataFrame] = {}
    rate_map = None
    distortion = None  # [N]: a model without log p(x|z) has none, nor an ELBO or IWAE (the note says so)
    row.update(distortion=math.nan, elbo=math.nan, iwae=math.nan, likelihood_note="")
    if has_likelihood(model):
        distortion = torch.as_tensor(E.distortion(model, x, seed=seed, per_example=True))
        row.update(_mean_se("distortion", distortion))
    else:
        row["likelihood_note"] = (f"{'distortion, ELBO and IWAE are' if stochastic else 'the distortion is'} not "
                                  f"measured, as {missing_likelihood(model, 'each' if stochastic else 'it')}")
    squared = None  # [N]: the squared error of each row, where the model decodes
    if callable(getattr(model, "decode", None)):
        squared = torch.as_tensor(E.mse(model, x, seed=seed, per_example=True), dtype=torch.float64)
        row.update(_mean_se("mse", squared))
    if stochastic:
        rate = E.rate(model, x, seed=seed, per_example=True)
        row.update(_mean_se("rate", rate))
        if distortion is not None:
            row.update(_mean_se("elbo", -(distortion + rate)))
            row.update(_mean_se("iwae", E.iwae(model, x[:iwae_rows], k, seed=seed, per_example=True,
                                           allow_long=allow_long)))
            row.update(_code_length(model, x[:iwae_rows], (distortion + rate)[:iwae_rows], seed))
        if callable(getattr(model, "latent_shapes_for", None)) and squared is not None:  # an image model: channels
            images = _image_measures(model, x, rate, squared, seed=seed)
            row.update(images.pop("row"))
            tables.update(images["tables"])
            rate_map = images["rate_map"]
        else:
            try:
                kl = E.kl_per_dim(model, x).tolist()
                tables["kl_per_dim"] = pd.DataFrame(dict(dimension=range(len(kl)), kl=kl))
            except (ValueError, TypeError):  # not a diagonal Gaussian posterior: no per-dimension KL
                pass
        if len(getattr(model, "latent_dims", ())) > 1:
            tables["per_layer"] = E.per_layer(model, x[:eval_rows], seed=seed)
    else:
        row["rate"] = math.nan
        tables["probe_curve"] = E.probe_curve(model, x[:eval_rows], PROBE_SIGMAS, seed=seed)
    row.update(E.information_bracket(model, x[:eval_rows], seed=seed))
    row["latent_dim"] = _latent_dim(model, x)
    row["active_units"] = E.active_units(model, x)
    if labels is not None:
        info = E.label_information(model, x, labels, seed=seed)
        tables["label_information"] = pd.DataFrame(dict(dimension=range(len(info["mi_per_dim"])),
                                                         mi_with_label=list(info["mi_per_dim"])))
        row.update(label_accuracy=info["accuracy"], label_chance=info["chance"], label_mi_noise=info["mi_noise"])
    row.update(registered_columns(model, x, seed))  # the estimator columns of your own (ibkit.registry.COLUMNS)
    return Analysis(row, tables, name, dataset, rate_map=rate_map)


def _image_measures(model, x: Tensor, rate, squared: Tensor, *, seed: int) -> dict:
    """An image model's own numbers (``ibkit.adapters.images``): the rate in bits per pixel, PSNR, the channels'
    rates, image 0's rate map, and where the model has them, a codec's coded bits and diffusers' clamped log
    variances. Returns {"row": columns, "tables": side tables, "rate_map": (image, map)}."""
    from ibkit.adapters.images import channel_rates, rate_map

    shape = model.shape_for(x.shape[-1])
    pixels = shape[1] * shape[2]
    bpp = torch.as_tensor(rate, dtype=torch.float64) / (math.log(2) * pixels)
    row = {"pixels": pixels, "likelihood_sigma": model.sigma, **_mean_se("rate_bpp", bpp),
           **_mean_se("psnr", 10 * torch.log10(x.shape[-1] / squared))}  # peak 1: pixels in [0, 1]
    tables = {"channel_rates": channel_rates(model, x, seed=seed)}
    if callable(getattr(model, "compressed_bits", None)):
        bits = model.compressed_bits(x, seed=seed)
        tables["compressed_bits"] = bits
        row.update(**_mean_se("ideal_bpp", bits["ideal_bpp"]), **_mean_se("real_bpp", bits["real_bpp"]))
    if callable(getattr(model, "clamped_fraction", None)):
        row["logvar_clamped"] = model.clamped_fraction(x)
    first = rate_map(model, x[:1], seed=seed)[0]
    return {"row": row, "tables": tables, "rate_map": (x[0].reshape(shape), first)}


def _code_length(model, x: Tensor, neg_elbo: Tensor, seed: int) -> dict:
    """-ELBO made a real code (``ibkit.coding.bits_back`` on the rows x): its nats per example, overhead included,
    and its ratio to the rows' -ELBO; where the model or data cannot be coded, NaN and the reason."""
    try:
        from ibkit.coding import bits_back

        code = bits_back(model, x, seed=seed)
    except ValueError as e:  # not coded (the reason says why): continuous data, another posterior, no constriction
        return dict(code_length=math.nan, code_length_ratio=math.nan, code_length_note=str(e))
    return dict(code_length=code.nats_per_example, code_length_ratio=code.nats_per_example / float(neg_elbo.mean()),
                code_length_note="")


def _mean_se(name: str, values) -> dict:
    """{name: the mean of values, name_se: its standard error} (float64)."""
    v = torch.as_tensor(values, dtype=torch.float64)
    return {name: float(v.mean()), f"{name}_se": float(v.std() / math.sqrt(len(v))) if len(v) > 1 else math.nan}


def _markdown(table: pd.DataFrame) -> str:
    """A side table as a markdown table, numbers to four significant digits."""
    cells = [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row] for row in table.itertuples(index=False)]
    head = [" | ".join(map(str, table.columns)), " | ".join("---" for _ in table.columns)]
    return "\n".join(f"| {line} |" for line in head + [" | ".join(c) for c in cells])


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _family(model) -> str:
    config = getattr(model, "config", None)
    return str(getattr(config, "posterior", "")) if config is not None else ""


def _latent_dim(model, x: Tensor) -> int:
    with torch.no_grad():
        return int(model.posterior(x[:1]).event_shape[0] if is_stochastic(model) else model.encode(x[:1]).shape[-1])


__all__ = ["analyse", "Analysis"]
