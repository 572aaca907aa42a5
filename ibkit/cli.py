"""The ``ibkit`` command: list, run, plot, table, gallery, analyse and compare. Bad input is one line on stderr and exit
status 2.

Experiments are found through the ``ibkit.experiments`` entry-point group of the installed packages (ibkit's own
and any other's: ``[project.entry-points."ibkit.experiments"] my-study = "my_package.my_study"``), never by
importing from the working folder. Commands that draw select a non-interactive matplotlib backend first.
"""

from __future__ import annotations

import argparse
import os
import sys
import types
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from ibkit.checks import resolve_device
from ibkit.config import config_help, parse_overrides
from ibkit.executors import EXECUTORS, check_executor, make_executor
from ibkit.progress import log_to_stderr
from ibkit.prose import left_out
from ibkit.registry import experiment, experiments
from ibkit.tables import FORMATS, format_table

USAGE_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (``ibkit: error: ...``) and exit status 2."""

    def error(self, message):
        raise SystemExit(_fail(f"{message} (see {self.prog} --help)"))


def _fail(message: str) -> int:
    """One line on stderr, whatever the message holds (a typed argument may carry a newline)."""
    print("ibkit: error: " + message.replace("\r", "\\r").replace("\n", "\\n"), file=sys.stderr)
    return USAGE_ERROR


def default_out(name: str, config, quick: bool) -> str:
    """``ibkit run``'s default folder: results/NAME-DATASET, with -quick for a quick run (e.g.
    results/rate_distortion-mnist-quick), so that no default ever lands on a committed reference folder."""
    dataset = getattr(config, "dataset", None)
    return f"results/{name.replace('-', '_')}{f'-{dataset}' if dataset else ''}{'-quick' if quick else ''}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _file_backend() -> None:
    """Draw into files: a non-interactive backend, chosen here rather than when ibkit is imported, so a notebook
    that imports ibkit keeps its own."""
    import matplotlib

    matplotlib.use("Agg")


def cmd_list(args) -> int:
    known = experiments()  # read once: each read scans every installed package's entry points
    for name in known:
        print(f"{name:20s} {experiment(name, known).SUMMARY}")
    return 0


def load_data(exp: types.ModuleType, config):
    """The experiment's dataset: ``exp.load_data(config)`` where it defines one, else ``ibkit.data.load(config.
    dataset)``; None for an experiment with neither."""
    import ibkit

    if hasattr(exp, "load_data"):
        return exp.load_data(config)
    return ibkit.data.load(config.dataset) if hasattr(config, "dataset") else None


def cmd_run(args) -> int:
    from ibkit import store

    exp = experiment(args.experiment)
    overrides = {**(exp.QUICK if args.quick else {}), **parse_overrides(exp.Config, args.set or [])}
    config = exp.Config(**overrides)
    check_executor(args.executor, args.jobs, args.address, args.threads)
    ds = load_data(exp, config)  # missing or bad data files are refused here, before anything is made
    out = args.out or default_out(args.experiment, config, args.quick)
    folder = store.check_folder(out, args.experiment, asdict(config), overwrite=args.overwrite,
                                defaults=asdict(exp.Config()), grows=getattr(exp, "GROWS", ()))
    executor = make_executor(args.executor, args.jobs, args.address, args.threads)  # a dead scheduler fails here
    try:
        folder.mkdir(parents=True, exist_ok=True)  # every input is known good from here on
    except OSError as e:  # where access() said yes but the file system says no (/proc, a read-only mount)
        raise ValueError(f"--out {folder} is not writable ({e.strerror}); pick a folder you can write to") from None
    try:
        with store.RunFolder(folder).lock():
            return _run_in(folder, exp, config, args, executor=executor, ds=ds)
    finally:
        if hasattr(executor, "close"):
            executor.close()


def _run_in(folder: Path, exp: types.ModuleType, config, args, *, executor, ds) -> int:
    """``ibkit run``'s work in its locked folder: the manifest, the sweep, the tables and figures."""
    from ibkit import store

    run = store.RunFolder(folder)
    if args.overwrite:  # only once every input is known good: a bad flag never costs stored results
        run.clear()
    data = None if ds is None else store.data_record(ds)
    meta = dict(experiment=args.experiment, config=asdict(config), quick=args.quick, seeds=list(config.seeds),
                data=data, executor=args.executor, jobs=args.jobs, threads=getattr(executor, "threads", None),
                device=str(resolve_device(config.device)), started=_now(),
                git=store.git_state(exclude=folder))  # the code that ran: the tree as the run starts
    run.write_manifest(**meta, finished=None)
    try:
        df = exp.run(config, out_dir=folder, executor=executor)
    except KeyboardInterrupt:
        kept = len(run.finished_run_ids())
        print(f"ibkit: interrupted; {kept} finished runs are kept in {folder}; to resume, run the same command "
              "again (it skips them)", file=sys.stderr)
        return 130
    run.write_tables()
    run.write_manifest(**meta, finished=_now())
    _file_backend()
    figures = exp.plot(folder, command=args.argv)
    bad = df[df["status"] != "ok"]["run_id"].unique()
    print(f"{df['run_id'].nunique()} runs -> {folder / store.RUNS}")
    if len(bad):
        print(f"{len(bad)} runs did not finish ok: {', '.join(bad)} (see the status and error columns)")
    print("figures and notes: " + ", ".join(str(p) for p in figures))
    print(format_table(run.load(), "markdown"))  # the table as stored, as `ibkit table` prints it
    return 0


def results_dir(text: str) -> Path:
    """The folder a plot, table or gallery command names; a missing one is refused, naming the folder that exists
    where the name differs only in - and _ (``results/rate-distortion-quick`` for ``results/rate_distortion-quick``)."""
    folder = Path(text)
    if folder.is_dir():
        return folder
    same = lambda name: name.replace("-", "_")  # noqa: E731
    near = sorted(p for p in folder.parent.glob("*") if p.is_dir() and same(p.name) == same(folder.name)) \
        if folder.parent.is_dir() else []
    hint = f"; did you mean {near[0]}?" if near else ""
    raise FileNotFoundError(f"no results folder {folder}{hint}")


def _experiment_of(folder: Path) -> types.ModuleType:
    from ibkit import store

    manifest = store.RunFolder(folder).read_manifest()
    if manifest is None:
        raise FileNotFoundError(f"no manifest.json in {folder}; is it a folder written by ibkit run?")
    if manifest.get("experiment") == "analyse":
        raise ValueError(f"{folder} is a report of ibkit analyse, which drew its figures; run it again to redraw them, "
                         "or put reports on one plane with ibkit compare DIR... --out OUT")
    return experiment(manifest.get("experiment"))


def cmd_plot(args) -> int:
    from ibkit import compare, store

    folder = results_dir(args.dir)
    combined = (store.RunFolder(folder).read_manifest() or {}).get("experiment") == store.COMBINED
    exp = None if combined else _experiment_of(folder)
    _file_backend()
    for path in compare.plot_combined(folder) if exp is None else exp.plot(folder, command=args.argv):
        print(path)
    return 0


def cmd_gallery(args) -> int:
    from ibkit.gallery import write_gallery

    _file_backend()
    print(write_gallery(results_dir(args.dir)))
    return 0


def cmd_table(args) -> int:
    from ibkit import store

    folder = results_dir(args.dir)
    runs = store.RunFolder(folder).load()
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    print(format_table(runs, args.format, source=store.RunFolder(folder).data_text(), columns=columns,
                       booktabs=not args.no_booktabs, siunitx=args.siunitx))
    skipped = left_out(runs)
    if args.format == "csv" and skipped:  # the CSV itself stays parseable: the note goes to stderr
        print(f"ibkit: {skipped}", file=sys.stderr)
    return 0


def load_model_argument(text: str):
    """MODEL of ``ibkit analyse``: an ibkit checkpoint, or ``module.py:factory``, a function of that file that returns
    a protocol model (the user's own code, run as asked).

    The file runs as ``python module.py`` would run it: its folder is first on ``sys.path`` while it loads and the
    factory runs, so it imports the modules beside it, and relative paths inside it (weights, data) resolve from
    the working folder, not from the file's."""
    path, _, factory = text.rpartition(":") if text.count(":") and text.rpartition(":")[0].endswith(".py") \
        else (text, "", "")
    if not Path(path).is_file():
        raise ValueError(f"MODEL={text!r}: no such file; give an ibkit checkpoint (.pt) or module.py:factory")
    if not factory:
        from ibkit.models import load_checkpoint

        return load_checkpoint(path), Path(path).stem
    import importlib.util

    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    folder = str(Path(path).resolve().parent)
    sys.path.insert(0, folder)  # its sibling modules import, as under `python module.py`
    try:
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        model = getattr(module, factory)()
    except AttributeError as e:
        raise ValueError(f"MODEL={text!r}: {path} has no function {factory!r} ({e})") from None
    except Exception as e:  # the user's code: its own error, on one line
        raise ValueError(f"MODEL={text!r}: {factory}() failed: {type(e).__name__}: {e}") from None
    finally:
        if folder in sys.path:  # unless the user's code took it off itself
            sys.path.remove(folder)
    from ibkit.interface import is_stochastic

    if not (is_stochastic(model) or callable(getattr(model, "encode", None))):
        raise ValueError(f"MODEL={text!r}: {factory}() returned a {type(model).__name__}, not a model (it needs "
                         "posterior, prior and log_likelihood, or encode; ibkit.wrap makes one from torch modules)")
    return model, factory


def load_codec_argument(text: str, pretrained: bool):
    """``--compressai NAME:QUALITY`` of ``ibkit analyse``: the zoo's codec, wrapped with its quality's lambda
    (``ibkit.adapters.compressai.load``), random weights drawn from seed 0 unless ``pretrained``; and its label."""
    import torch

    from ibkit.adapters import compressai

    architecture, _, quality = text.partition(":")
    if not quality.isdigit():
        raise ValueError(f"--compressai {text!r}: give NAME:QUALITY, e.g. bmshj2018_factorized:1 (names: "
                         f"{', '.join(compressai.ARCHITECTURES)}; qualities 1..8)")
    torch.manual_seed(0)
    try:
        model = compressai.load(architecture, int(quality), pretrained=pretrained)
    except ValueError:
        raise
    except Exception as e:  # the download of the weights, CompressAI's own errors: one line
        raise ValueError(f"--compressai {text}: {type(e).__name__}: {e}") from None
    return model, f"{architecture}-q{quality}{'' if pretrained else '-random'}"


def load_rows(data: str, labels: str | None, size: int | None = None):
    """``--data`` (a dataset name: its test split and labels; a FOLDER of PNG or JPEG images: all of them, at
    ``size`` where given; or FILE.npy [N, ...], flattened to [N, D]) and ``--labels`` (FILE.npy [N]) as (x, labels,
    dataset name)."""
    import numpy as np
    import torch

    import ibkit

    if data in ibkit.data.DATASETS:
        ds = ibkit.data.load(data)
        x, y, name = ds.test, ds.test_labels, f"{data} test split"
    elif Path(data).is_dir():
        from ibkit.data._split import split_indices

        ds = ibkit.data.load("images", path=data, size=size, test_fraction=0.5)  # any 2 or more images split
        n = len(ds.train) + len(ds.test)
        order = np.argsort(np.concatenate(split_indices(n, 0.5, 0)))  # back to the folder's (sorted) order
        x, y, name = torch.cat([ds.train, ds.test])[torch.as_tensor(order)], None, f"{Path(data).name} ({n} images)"
    else:
        if not data.endswith(".npy") or not Path(data).is_file():
            raise ValueError(f"--data {data!r} is neither a dataset ({', '.join(ibkit.data.DATASETS)}), a folder "
                             "of images nor an existing FILE.npy")
        array = np.load(data, allow_pickle=False)
        if array.ndim < 2 or not np.issubdtype(array.dtype, np.number):
            raise ValueError(f"--data {data}: a {array.dtype} array of shape {list(array.shape)}; it needs numbers "
                             "[N, D] (or [N, H, W], flattened)")
        x, y, name = torch.as_tensor(array.reshape(len(array), -1), dtype=torch.float32), None, Path(data).name
    if labels is not None:
        if not Path(labels).is_file():
            raise ValueError(f"--labels {labels!r}: no such file")
        y = np.load(labels, allow_pickle=False)
        if y.shape != (len(x),):
            raise ValueError(f"--labels {labels}: shape {list(y.shape)}; it needs one label per row, [{len(x)}]")
    return x, (None if y is None else np.asarray(y)), name


def cmd_analyse(args) -> int:
    from ibkit.analysis import analyse

    if args.k < 1:
        raise ValueError(f"--k {args.k}: the IWAE bound needs k >= 1 importance samples")
    if (args.model is None) == (args.compressai is None):
        raise ValueError("give one model: MODEL (a checkpoint or module.py:factory) or --compressai NAME:QUALITY")
    if args.pretrained and args.compressai is None:
        raise ValueError("--pretrained applies to a --compressai codec")
    model, name = load_model_argument(args.model) if args.compressai is None else \
        load_codec_argument(args.compressai, args.pretrained)
    x, labels, dataset = load_rows(args.data, args.labels, args.size)
    _file_backend()
    result = analyse(model, x, labels, k=args.k, name=name, dataset=dataset.split(" ")[0],
                     allow_long=args.allow_long)
    out = Path(args.out or f"results/analyse-{name}")
    paths = result.write(out)
    print(result.report().split("\n## ")[0].rstrip())
    print(f"\nreport, table and figures: {out / 'report.md'} ({len(paths)} files)")
    return 0


def _new_file(text: str, suffix: str = "", overwrite: bool = False) -> Path:
    """An output file path that may be written: refused where it exists (unless ``overwrite``), lacks ``suffix``
    or its folder does not exist."""
    path = Path(text)
    if suffix and path.suffix != suffix:
        raise ValueError(f"OUT={text!r} must end in {suffix}")
    if path.exists() and not overwrite:
        raise ValueError(f"OUT={text!r} exists; pass --overwrite to replace it, or choose another name")
    if not path.parent.is_dir():
        raise ValueError(f"OUT={text!r}: no folder {path.parent}")
    return path


def cmd_compress(args) -> int:
    import math

    from ibkit import estimators as E
    from ibkit.atomic import atomic_open
    from ibkit.coding import compress

    out = _new_file(args.out, overwrite=args.overwrite)
    model, _ = load_model_argument(args.model)
    x, _, dataset = load_rows(args.data, None)
    data = compress(model, x, seed=args.seed, latent_bins=args.latent_bins, chains=args.chains)
    with atomic_open(out, binary=True) as f:  # the whole file or none of it
        f.write(data)
    bits = 8 * len(data) / len(x)
    neg_elbo = -E.elbo(model, x, n_samples=64) / math.log(2)
    print(f"{len(x)} rows of {dataset} -> {out}: {len(data):,} bytes, {bits:.2f} bits per example (the header, "
          f"seed words and padding included); -ELBO {neg_elbo:.2f} bits per example (64 samples); ratio "
          f"{bits / neg_elbo:.4f}")
    return 0


def cmd_decompress(args) -> int:
    import numpy as np

    from ibkit.coding import decompress

    out = _new_file(args.out, suffix=".npy", overwrite=args.overwrite)
    source = Path(args.input)
    if not source.is_file():
        raise ValueError(f"IN={args.input!r}: no such file")
    model, _ = load_model_argument(args.model)
    rows = decompress(model, source.read_bytes())
    np.save(out, rows.numpy().astype(np.uint8))
    print(f"{len(rows)} rows of {rows.shape[1]} values -> {out}")
    return 0


def cmd_compare(args) -> int:
    from ibkit import compare, store

    _file_backend()
    runs = compare.combine(args.dirs, args.out, overwrite=args.overwrite)
    out = Path(args.out)
    print(format_table(runs, "markdown", source=store.RunFolder(out).data_text()))
    print(f"\n{runs['source'].nunique()} sources, {len(runs)} rows -> {out / store.RUNS}; the plane: "
          f"{out / 'figures' / 'rate_distortion.png'}")
    return 0


def _run_help(argv: list[str]) -> tuple[str, str]:
    """For ``ibkit run NAME --help``: the --out default of NAME and its --set keys (``config_help``); generic text
    for any other command line."""
    names = [a for a in argv[1:] if not a.startswith("-")]
    asked = argv[:1] == ["run"] and bool({"-h", "--help"} & set(argv)) and bool(names)
    known = experiments() if asked else {}  # read once, and only here: it scans every installed package
    if not asked or names[0] not in known:
        return "results/NAME-DATASET (e.g. results/rate_distortion-digits); --quick adds -quick", ""
    exp = experiment(names[0], known)
    return (f"{default_out(names[0], exp.Config(), False)}; with --quick "
            f"{default_out(names[0], exp.Config(**exp.QUICK), True)}"), config_help(exp.Config)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    out_default, keys = _run_help(argv or [])
    parser = _Parser(prog="ibkit", description="Information-theoretic bottleneck analysis of autoencoders.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="experiments and what each shows").set_defaults(func=cmd_list)
    run = sub.add_parser("run", help="run an experiment, store its table, manifest and figures",
                         epilog=keys or "ibkit run NAME --help lists NAME's config keys",
                         formatter_class=argparse.RawTextHelpFormatter)
    run.add_argument("experiment", help="an experiment name (ibkit list)")
    run.add_argument("--quick", action="store_true", help="the about-a-minute version (fewer epochs, one seed)")
    run.add_argument("--out", help=f"results folder (default {out_default})")
    run.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field; repeatable")
    run.add_argument("--overwrite", action="store_true", help="replace results of a different config in --out")
    run.add_argument("--executor", choices=EXECUTORS, default="local",
                     help="local: this process, or --jobs worker processes; dask: a Dask cluster (the [dask] extra)")
    run.add_argument("--jobs", type=int, default=1, help="worker processes (local) or local Dask workers")
    run.add_argument("--address", help="tcp://host:port of a running Dask scheduler (with --executor dask)")
    run.add_argument("--threads", type=int, help="torch threads per process (default: the machine's cores divided "
                     "among the --jobs processes)")
    run.set_defaults(func=cmd_run)
    plot = sub.add_parser("plot", help="redraw the figures of a stored results folder")
    plot.add_argument("dir", help="a folder written by ibkit run (with manifest.json and runs.csv)")
    plot.set_defaults(func=cmd_plot)
    table = sub.add_parser("table", help="the table a paper cites, from a stored results folder")
    table.add_argument("dir", help="a folder written by ibkit run (with runs.csv)")
    table.add_argument("--format", choices=FORMATS, default="markdown")
    table.add_argument("--columns", help="comma-separated columns to print, in order (default: the config "
                       "columns that vary, seeds and every metric; LaTeX: those columns with rate, distortion, ELBO, "
                       "IWAE and the I(X;Z) bracket)")
    table.add_argument("--no-booktabs", action="store_true", help="LaTeX rules with \\hline (the default, "
                       "\\toprule..., needs \\usepackage{booktabs})")
    table.add_argument("--siunitx", action="store_true", help="LaTeX numbers aligned on the decimal point "
                       "(S columns; needs \\usepackage{siunitx})")
    table.set_defaults(func=cmd_table)
    gallery = sub.add_parser("gallery", help="write DIR/README.md from the stored run folders' figures and findings")
    gallery.add_argument("dir", nargs="?", default="results",
                         help="the folder holding run folders (default results); writes DIR/README.md")
    gallery.set_defaults(func=cmd_gallery)
    analyse = sub.add_parser("analyse", help="measure one trained model: report.md, a one-row table and figures")
    analyse.add_argument("model", nargs="?", help="an ibkit checkpoint (.pt), or module.py:factory (a function "
                         "returning a protocol model, e.g. ibkit.wrap(...), ibkit.adapters.pythae.wrap(...) or "
                         "ibkit.adapters.diffusers.wrap(...))")
    analyse.add_argument("--compressai", metavar="NAME:QUALITY", help="a CompressAI codec instead of MODEL, e.g. "
                         "bmshj2018_factorized:1 (random weights, seed 0, unless --pretrained)")
    analyse.add_argument("--pretrained", action="store_true", help="the --compressai codec with CompressAI's trained "
                         "weights (downloaded on first use)")
    analyse.add_argument("--data", required=True, help="a dataset name (its test split and labels), a FOLDER of "
                         "PNG or JPEG images, or FILE.npy [N, D] (or [N, H, W], flattened)")
    analyse.add_argument("--size", type=int, help="a FOLDER's images centre-cropped and resized to SIZE x SIZE "
                         "(default: their own size, which must be equal)")
    analyse.add_argument("--labels", help="FILE.npy of one class label per row (default: the dataset's)")
    analyse.add_argument("--k", type=int, default=1000, help="importance samples of the IWAE bound (default 1000)")
    analyse.add_argument("--out", help="the report folder (default results/analyse-MODEL)")
    analyse.add_argument("--allow-long", action="store_true", help="run work estimated at over an hour (refused "
                         "otherwise, with the estimate)")
    analyse.set_defaults(func=cmd_analyse)
    compare = sub.add_parser("compare", help="several analyse reports or run folders on one plane and one table")
    compare.add_argument("dirs", nargs="+", metavar="DIR", help="folders written by ibkit analyse or ibkit run (each "
                         "with runs.csv and manifest.json); each is named by its folder name, so no two may share one")
    compare.add_argument("--out", required=True, help="the folder to write: runs.csv (with a source column), "
                         "manifest.json (each source's, whole) and figures/rate_distortion.pdf|png")
    compare.add_argument("--overwrite", action="store_true", help="replace the tables and manifest --out holds")
    compare.set_defaults(func=cmd_compare)
    model_help = "an ibkit checkpoint (.pt), or module.py:factory, as ibkit analyse takes it"
    compress = sub.add_parser("compress", help="bits-back code binary rows with a model into one file")
    compress.add_argument("model", help=model_help)
    compress.add_argument("data", help="a dataset name (its test split) or FILE.npy of binary rows [N, D]")
    compress.add_argument("out", help="the file to write")
    compress.add_argument("--seed", type=int, default=0, help="the seed words the first pops read (default 0)")
    compress.add_argument("--latent-bins", type=int, default=4096, help="equal-mass prior bins per latent "
                          "dimension (default 4096)")
    compress.add_argument("--chains", type=int, default=1, help="independent ANS chains (default 1: each adds "
                          "its seed words and padding to the file)")
    compress.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    compress.set_defaults(func=cmd_compress)
    decompress = sub.add_parser("decompress", help="the rows of a file ibkit compress wrote, as FILE.npy")
    decompress.add_argument("model", help=model_help + " (the one that compressed it)")
    decompress.add_argument("input", metavar="IN", help="the file ibkit compress wrote")
    decompress.add_argument("out", help="FILE.npy to write the rows [N, D] into")
    decompress.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    decompress.set_defaults(func=cmd_decompress)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser(sys.argv[1:] if argv is None else argv).parse_args(argv)
        args.argv = ["ibkit", *(sys.argv[1:] if argv is None else argv)]  # the command generated files name
        with log_to_stderr():  # long work's progress lines (ibkit.progress), on stderr for this command only
            return args.func(args)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else USAGE_ERROR
    except BrokenPipeError:  # the reader went away (`ibkit table DIR | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, OSError) as e:  # bad input, missing or unreadable files, a failed download
        return _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)


def entry_point() -> None:
    """The console script: exit with main's status."""
    sys.exit(main())


if __name__ == "__main__":
    # `python -m ibkit.cli` puts the working folder first on sys.path, where a results folder from elsewhere could
    # shadow the experiments package with code of its own; the folders ibkit reads are data: take it off
    sys.path[:] = [p for p in sys.path if p not in ("", os.getcwd())]
    entry_point()
