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
(``results/rate_distortion`` for digits, ``results/rate_distortion_mnist`` for MNIST) where one is at hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ibkit import estimators as E
from ibkit.checks import check_number
from ibkit.estimators._common import has_likelihood, missing_likelihood
from ibkit.interface import is_stochastic
from ibkit.models.registry import all_knobs
from ibkit.tables import bracket_text, round_to_uncertainty

PROBE_SIGMAS = (1.0, 0.1, 1e-2, 1e-3, 1e-4)  # the probe curve of a deterministic code
REFERENCES = {"digits": "rate_distortion", "mnist": "rate_distortion_mnist"}  # committed frontiers, in results/


@dataclass
class Analysis:
    """What ``analyse`` measured. ``row``: the results-schema row (with ``_se`` columns); ``tables``: the side tables
    (kl_per_dim, probe_curve, per_layer, label_information, where they apply); ``name`` and ``dataset`` label it."""

    row: dict
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    name: str = "model"
    dataset: str = ""

    def value(self, metric: str) -> str:
        """'4.31 ± 0.12' (mean ± one standard error), '∞' for a bound that does not exist, '–' for none."""
        mean, se = self.row.get(metric, math.nan), self.row.get(f"{metric}_se", math.nan)
        if mean == math.inf:
            return "∞"
        return round_to_uncertainty(mean, se)

    def report(self) -> str:
        """report.md: the headline numbers, what they say, and the side tables."""
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
        lines += [f"| active units | {r['active_units']} of {r['latent_dim']} |", ""]
        lines += self._sentences(stochastic)
        if r.get("likelihood_note"):  # a model without log p(x|z): what was left out, and why
            lines += ["", f"{r['likelihood_note'][0].upper()}{r['likelihood_note'][1:]}."]
        for title, name in (("KL per dimension", "kl_per_dim"), ("Per layer", "per_layer"),
                            ("Probe curve", "probe_curve"), ("Label information", "label_information")):
            if name in self.tables:
                lines += ["", f"## {title}", "", _markdown(self.tables[name])]
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
        """runs.csv, report.md, a CSV per side table and the figures (PNG and PDF) into ``out``; returns the paths."""
        from ibkit import plots
        from ibkit.results import atomic_write_text, write_manifest

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / "runs.csv", out / "report.md"]
        atomic_write_text(paths[0], pd.DataFrame([self.row]).to_csv(index=False))
        for name, table in self.tables.items():
            atomic_write_text(out / f"{name}.csv", table.to_csv(index=False))
            paths.append(out / f"{name}.csv")
        figures, data = out / "figures", f"{self.dataset or 'the given rows'}, {self.row['rows']} rows"
        if not _missing(self.row.get("distortion")):  # without log p(x|z) the model has no point on the plane
            paths += plots.save_figure(plane_figure(self), figures, "rate_distortion", data=data)
        paths += plots.save_figure(bracket_figure(self), figures, "information", data=data)
        if "kl_per_dim" in self.tables:
            paths += plots.save_figure(kl_figure(self.tables["kl_per_dim"]), figures, "kl_per_dim", data=data)
        if "probe_curve" in self.tables:
            paths += plots.save_figure(probe_figure(self), figures, "probe_curve", data=data)
        if "label_information" in self.tables:
            paths += plots.save_figure(label_figure(self), figures, "label_information", data=data)
        atomic_write_text(paths[1], self.report() + "\n## Figures\n\n" + "".join(
            f"![{p.stem}](figures/{p.name})\n\n" for p in paths if p.suffix == ".png"))
        # last: a folder with a manifest is whole (ibkit compare reads it): the command, git state and environment
        paths.append(write_manifest(out, experiment="analyse", name=self.name, data={
            "name": self.dataset or "the given rows", "split": f"{self.row['rows']:,} rows"}))
        return paths


def analyse(model, x, labels=None, *, k: int = 1000, seed: int = 0, eval_rows: int = 2000, iwae_rows: int = 1000,
            name: str = "model", dataset: str = "", allow_long: bool = False) -> Analysis:
    """Measure one trained ``model`` on the rows of x [N, D] (module docstring); ``labels`` [N] adds the label
    information. Returns an ``Analysis``; ``.write(out)`` stores the report, the table and the figures. An IWAE
    whose k x iwae_rows decoder passes would take more than an hour is refused (a ValueError naming the estimate)
    unless ``allow_long``."""
    check_number("k", k, low=1, integer=True)
    check_number("eval_rows", eval_rows, low=2, integer=True)
    check_number("iwae_rows", iwae_rows, low=1, integer=True)
    x = torch.as_tensor(x, dtype=torch.float32)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (len(x),):
            raise ValueError(f"labels has shape {list(labels.shape)}; it needs one label per row of x, [{len(x)}]")
    model = model.eval() if isinstance(model, torch.nn.Module) else model
    stochastic = is_stochastic(model)
    row: dict = dict(experiment="analyse", run_id=name, dataset=dataset, kind=getattr(model, "KIND", "") or
                     type(model).__name__, posterior=_family(model), seed=seed, split="test", rows=len(x), k=k,
                     eval_rows=min(eval_rows, len(x)), iwae_rows=min(iwae_rows, len(x)), status="ok")
    config = getattr(model, "config", None)  # an ibkit model's knobs; NaN for others, as in any results table
    row.update({knob: math.nan if getattr(config, knob, None) is None else float(getattr(config, knob))
                for knob in all_knobs()})
    tables: dict[str, pd.DataFrame] = {}
    distortion = None  # [N]: a model without log p(x|z) has none, nor an ELBO or IWAE (the note says so)
    row.update(distortion=math.nan, elbo=math.nan, iwae=math.nan, likelihood_note="")
    if has_likelihood(model):
        distortion = torch.as_tensor(E.distortion(model, x, seed=seed, per_example=True))
        row.update(_mean_se("distortion", distortion))
    else:
        row["likelihood_note"] = (f"{'distortion, ELBO and IWAE are' if stochastic else 'the distortion is'} not "
                                  f"measured, as {missing_likelihood(model, 'each' if stochastic else 'it')}")
    if callable(getattr(model, "decode", None)):
        row.update(_mean_se("mse", E.mse(model, x, seed=seed, per_example=True)))
    if stochastic:
        rate = E.rate(model, x, seed=seed, per_example=True)
        row.update(_mean_se("rate", rate))
        if distortion is not None:
            row.update(_mean_se("elbo", -(distortion + rate)))
            row.update(_mean_se("iwae", E.iwae(model, x[:iwae_rows], k, seed=seed, per_example=True,
                                           allow_long=allow_long)))
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
    return Analysis(row, tables, name, dataset)


def _mean_se(name: str, values) -> dict:
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


# the figures


def plane_figure(a: Analysis):
    """The model's point (a star; hollow for a deterministic code, placed at its probe information) on the
    rate-distortion plane with its I(X;Z) bracket as a band at its distortion (InfoNCE to the upper bound; for a
    deterministic code, whose information has no upper bound, an arrow), beside the committed reference sweep of its
    dataset, named in the legend; where there is none, on the bare plane with its constant-ELBO lines, saying so."""
    import matplotlib.pyplot as plt

    from ibkit import plots
    from ibkit.results import load

    r, stochastic = a.row, not math.isnan(a.row["rate"])
    folder = reference_folder(a.dataset)
    reference = load(folder) if folder is not None else None
    d, lower = r["distortion"], r["mi_lower"]
    x, x_err = (r["rate"], r["rate_se"]) if stochastic else (lower, r["mi_lower_se"])
    upper = r["mi_upper"] if stochastic and math.isfinite(r["mi_upper"]) else None
    with plt.rc_context(plots.style()):
        fig, ax = plots.figure_for(None, (plots.SINGLE_COLUMN * 1.45, plots.SINGLE_COLUMN * 1.45 * 1.05))
        if upper is not None:
            ax.plot([lower, upper], [d, d], color="0.2", lw=5, alpha=0.3, solid_capstyle="butt",
                    label=f"its I(X;Z) bracket: {lower:.3g} to {upper:.3g} (InfoNCE to the upper bound)")
        what = f"R = {x:.3g}, D = {d:.3g}" if stochastic else \
            f"I(X;Z) ≥ {lower:.3g} through a σ = {r.get('probe_sigma', math.nan):g} probe, no upper bound (→)"
        ax.errorbar([x], [d], xerr=[x_err], yerr=[r.get("distortion_se", 0.0)], marker="*", ms=12, color="black",
                    mfc="black" if stochastic else "white", zorder=5, ls="none", capsize=2,
                    label=f"{a.name} (this model): {what}")
        span = max([x, upper or 0, 1] + ([] if reference is None else [
            reference[c].max() for c in ("rate", "mi_lower") if c in reference and reference[c].notna().any()]))
        if reference is None:  # the lone point, with room around it, from the origin
            ax.set_xlim(0, 1.3 * span)
            ax.set_ylim(min(0, 1.3 * d), max(1.3 * d, 1))
            ax.text(0.97, 0.97, f"no reference sweep for this data\n(committed for {', '.join(REFERENCES)})",
                    transform=ax.transAxes, ha="right", va="top", fontsize=7, color="0.35", style="italic",
                    bbox=dict(boxstyle="square,pad=0.2", fc="white", ec="none"), zorder=4)
        if not stochastic:
            ax.annotate("", xy=(x + 0.1 * span, d), xytext=(x, d), arrowprops=dict(arrowstyle="->", color="black"))
        source = f"results/{REFERENCES[a.dataset]}" if reference is not None else None
        plots.rate_distortion(reference, ax=ax, source=source, legend_below=True)
        plots.set_title(ax, f"{a.name} on the rate–distortion plane" + (f" ({a.dataset})" if a.dataset else ""))
    return fig


def bracket_figure(a: Analysis):
    """The sandwich mi_lower <= I(X;Z) <= mi_upper with the rate and the log N ceiling of InfoNCE, in nats."""
    import matplotlib.pyplot as plt

    from ibkit import plots

    r = a.row
    with plt.rc_context(plots.style()):
        fig, ax = plots.figure_for(None, (plots.SINGLE_COLUMN * 1.45, plots.SINGLE_COLUMN * 0.6))
        upper = r["mi_upper"] if math.isfinite(r["mi_upper"]) else None
        right = max(v for v in (r["log_n"], r["mi_lower"], upper or 0,
                                r["rate"] if math.isfinite(r["rate"]) else 0)) * 1.25
        ax.errorbar([r["mi_lower"]], [0], xerr=[1.96 * r["mi_lower_se"]], marker="|", ms=18, color="C0",
                    label="lower bound (InfoNCE)")
        if upper is not None:
            ax.errorbar([upper], [0], xerr=[1.96 * r["mi_upper_se"]], marker="|", ms=18, color="C1",
                        label="upper bound")
            ax.plot([r["mi_lower"], upper], [0, 0], color="grey", lw=4, alpha=0.4, solid_capstyle="butt")
        else:
            ax.annotate("", xy=(right, 0), xytext=(r["mi_lower"], 0), arrowprops=dict(arrowstyle="->", color="C1"))
            ax.text(right, 0.15, "no upper bound (∞)", ha="right", color="C1", fontsize="small",
                    bbox=dict(boxstyle="square,pad=0.1", fc="white", ec="none"), zorder=3)
        ax.axvline(r["log_n"], ls="--", color="grey", lw=1, label=f"log N = {r['log_n']:.3g} (InfoNCE's ceiling)")
        ax.set_xlim(0, right)
        ax.set_ylim(-1, 1)
        ax.set_yticks([])
        ax.set_xlabel("I(X;Z)  [nats]")
        plots.set_title(ax, f"What crosses the code of {a.name} (95% intervals)")
        ax.legend(loc="upper left", ncol=1, frameon=False, bbox_to_anchor=(0, -0.35))
    return fig


def kl_figure(kl: pd.DataFrame):
    import matplotlib.pyplot as plt

    from ibkit import plots

    with plt.rc_context(plots.style()):
        fig, ax = plots.figure_for(None, (plots.SINGLE_COLUMN * 1.2, plots.SINGLE_COLUMN * 0.8))
        ordered = kl.sort_values("kl", ascending=False)
        ax.bar(range(len(ordered)), ordered["kl"], color="C0")
        ax.set_xticks(range(len(ordered)), [str(d) for d in ordered["dimension"]])
        ax.set_xlabel("latent dimension k, largest KL first  [index]")
        ax.set_ylabel("E KL(q(z_k|x) ‖ p(z_k))  [nats]")
        plots.set_title(ax, "KL per dimension")
    return fig


def probe_figure(a: Analysis):
    import matplotlib.pyplot as plt

    from ibkit import plots

    curve = a.tables["probe_curve"]
    with plt.rc_context(plots.style()):
        fig, ax = plots.figure_for(None, (plots.SINGLE_COLUMN * 1.2, plots.SINGLE_COLUMN * 0.8))
        ax.errorbar(curve["sigma"], curve["infonce"], yerr=1.96 * curve["infonce_se"], marker="o", color="C2",
                    label="InfoNCE (lower bound)")
        if "upper" in curve:  # the smallest of LOO, rate and capacity: above the frame where log N caps InfoNCE
            ax.fill_between(curve["sigma"], curve["infonce"], curve["upper"], color="C2", alpha=0.15, lw=0,
                            label="up to min(LOO, rate, capacity)")
        ax.axhline(a.row["log_n"], ls="--", color="grey", lw=1, label=f"log N = {a.row['log_n']:.3g}")
        ax.set_ylim(bottom=0, top=1.4 * max(a.row["log_n"], float(curve["infonce"].max())))
        ax.set_xscale("log")
        ax.set_xlabel("probe noise std σ  [code units]")
        ax.set_ylabel("I(X; Z + σε)  [nats]")
        plots.set_title(ax, "A deterministic code through a probe channel")
        ax.legend()
    return fig


def label_figure(a: Analysis):
    import matplotlib.pyplot as plt

    from ibkit import plots

    info = a.tables["label_information"]
    with plt.rc_context(plots.style()):
        fig, ax = plots.figure_for(None, (plots.SINGLE_COLUMN * 1.2, plots.SINGLE_COLUMN * 0.8))
        ax.bar(info["dimension"], info["mi_with_label"], color="C4")
        ax.set_xlabel("latent dimension k  [index]")
        ax.axhline(a.row["label_mi_noise"], ls="--", color="grey", lw=1,
                   label=f"noise floor {a.row['label_mi_noise']:.2f} (labels shuffled)")
        ax.set_ylim(0, 1.3 * max(info["mi_with_label"].max(), a.row["label_mi_noise"], 1e-3))  # room for the legend
        ax.legend(loc="upper left", ncol=1)
        ax.set_ylabel("I(z_k; label), z ~ q(z|x)  [nats]")
        plots.set_title(ax, f"Label information: probe accuracy {a.row['label_accuracy']:.3f} "
                        f"(chance {a.row['label_chance']:.3f})")
    return fig


def reference_folder(dataset: str) -> Path | None:
    """The committed rate-distortion reference of ``dataset`` in the checkout ibkit runs from, if it is there."""
    name = REFERENCES.get(dataset)
    folder = Path(__file__).resolve().parents[1] / "results" / name if name else None
    return folder if folder is not None and (folder / "runs.csv").is_file() else None


__all__ = ["analyse", "Analysis", "reference_folder"]
