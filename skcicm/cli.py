"""The ``skcicm`` command line.

``skcicm evaluate`` (or ``python -m skcicm evaluate``) runs an evaluation protocol end to end:
it loads a dataset, encodes every image once (cached on disk under the output folder), fits
and scores the methods, and writes the results file, the Markdown table and the plots. With
no arguments at all, ``skcicm`` evaluates ToyCLIP on ToyWorld, which needs nothing from the
network.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from skcicm.evaluation.protocols import (
    DEFAULT_LAM,
    INTERVENTION_SOURCES,
    METHODS,
    ZERO_SHOT_METHODS,
)

PROTOCOLS = ("domain-shift", "open-class", "imagenet")
DEFAULT_OUTPUT_DIR = "results"
# Style words of the text interventions when the dataset's domains have no usable names.
GENERIC_STYLES = ("photo", "sketch", "painting", "cartoon", "rendering")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, not usage plus a line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _numbers(text: str, kind: type, option: str) -> list:
    values = []
    for item in _comma_list(text):
        try:
            values.append(kind(item))
        except ValueError:
            raise ValueError(
                f"{option}: {item!r} is not {'an integer' if kind is int else 'a number'}; "
                f"expected a comma-separated list such as {'32,64' if kind is int else '0.1,1,10'}."
            ) from None
    if not values:
        raise ValueError(f"{option} is empty; give at least one value.")
    return values


class _DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show each default once: not where the help text already explains it, nor when None."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``skcicm`` command."""
    parser = _Parser(
        prog="skcicm",
        description="CLIP-ICM: evaluate invariant causal mechanisms of CLIP under domain shift. "
        "Without arguments, runs 'skcicm evaluate' on the embedded ToyWorld data with ToyCLIP.",
    )
    from skcicm import __version__

    parser.add_argument("--version", action="version", version=f"skcicm {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    evaluate = commands.add_parser(
        "evaluate",
        help="run an evaluation protocol and write results, table and plots",
        description="Run an evaluation protocol of the CLIP-ICM paper. Every image is encoded "
        "once and cached under the output folder; an interrupted run resumes from the cache. "
        "Splits follow DomainBed: each domain is split 80/20 per seed; models are fitted on the "
        "source domains' 80% and scored on the target domain's 80%.",
        formatter_class=_DefaultsHelpFormatter,
    )
    data = evaluate.add_argument_group("data")
    data.add_argument(
        "--dataset",
        default="toyworld",
        help="toyworld (generated, no download), a DomainBed name (PACS, VLCS, OfficeHome, "
        "TerraIncognita, DomainNet; needs --root), imagenet (needs --root), or the path of "
        "any folder laid out as <domain>/<class>/<image>",
    )
    data.add_argument(
        "--root",
        help="data folder: holds the DomainBed dataset folder (e.g. <root>/PACS/<domain>/...), "
        "or imagenet/train and the variant folders (imagenetv2-matched-frequency-format-val, "
        "sketch, imagenet-r, imagenet-a)",
    )
    data.add_argument(
        "--domains", help="comma-separated domains to load (default: all of the dataset)"
    )
    data.add_argument(
        "--n-per-cell",
        type=int,
        default=20,
        help="toyworld only: images per (class, domain)",
    )
    data.add_argument(
        "--max-per-class",
        type=int,
        help="imagenet only: source images kept per class, drawn at random (default: all)",
    )
    model = evaluate.add_argument_group("model")
    model.add_argument(
        "--model",
        help="open_clip architecture (e.g. ViT-B-16), a registered name (toyclip), "
        "local-dir:/path or hf-hub:org/repo (default: toyclip for toyworld, else ViT-B-16)",
    )
    model.add_argument(
        "--pretrained",
        help="open_clip pretrained tag or checkpoint file, for an architecture name "
        "(default: openai for the default ViT-B-16)",
    )
    model.add_argument(
        "--template",
        action="append",
        dest="templates",
        metavar="TEMPLATE",
        help="zero-shot prompt template with {} for the class name; repeat to ensemble "
        "(default: the dataset's, else 'a photo of a {}.')",
    )
    model.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, cuda:1...")
    model.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    model.add_argument(
        "--num-workers", type=int, default=2, help="threads that decode and preprocess images"
    )
    protocol = evaluate.add_argument_group("protocol")
    protocol.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        help="domain-shift: fit on the source domains, score each target; open-class: fit on "
        "the base classes (first half, sorted), score base and novel classes of the target "
        "and their harmonic mean; imagenet: fit on ImageNet, score its variants "
        "(default: imagenet for --dataset imagenet, else domain-shift)",
    )
    protocol.add_argument(
        "--targets",
        help="comma-separated target domains (ImageNet variants for imagenet; default: all)",
    )
    protocol.add_argument(
        "--methods",
        help=f"comma-separated methods among {', '.join(METHODS)} (default: all that apply; "
        "open-class takes the zero-shot ones)",
    )
    protocol.add_argument(
        "--lam",
        default=",".join(f"{v:g}" for v in DEFAULT_LAM),
        help="CLIP-ICM penalty weight lambda, or a comma-separated grid",
    )
    protocol.add_argument(
        "--n-components",
        default="auto",
        help="subspace dimension K, or a comma-separated grid; auto = d/4,d/2 for embedding "
        "dimension d",
    )
    protocol.add_argument(
        "--tuning",
        choices=("source", "oracle"),
        default="source",
        help="how a grid is resolved: source = leave-one-domain-out CV on the source domains "
        "(imagenet: the source's 20%% holdout); oracle = best on the target's 20%% holdout "
        "(imagenet: on the variant), an upper bound labelled (oracle)",
    )
    protocol.add_argument(
        "--interventions",
        default="image",
        help=f"comma-separated sources of interventional data among "
        f"{', '.join(INTERVENTION_SOURCES)}: augmented image copies; style prompt pairs over "
        "the names of the loaded domains (for each target, pairs naming it are left out); "
        "class-conditional contrasts between source domains",
    )
    protocol.add_argument(
        "--n-interventions", type=int, default=1, help="augmented copies per image"
    )
    protocol.add_argument(
        "--lam-scale",
        choices=("absolute", "trace"),
        default="absolute",
        help="trace: lambda relative to tr(Sigma_Z)/tr(Sigma_Delta)",
    )
    protocol.add_argument("--seeds", default="0,1,2", help="comma-separated DomainBed trial seeds")
    protocol.add_argument(
        "--holdout-fraction", type=float, default=0.2, help="fraction of each domain held out"
    )
    protocol.add_argument(
        "--n-jobs", type=int, help="parallel fits in the cross-validation (joblib)"
    )
    output = evaluate.add_argument_group("output")
    output.add_argument(
        "--output-dir",
        default=DEFAULT_OUTPUT_DIR,
        help="results go to <output-dir>/<dataset>-<protocol>/ (imagenet: imagenet-variants/)",
    )
    output.add_argument(
        "--cache-dir", help="embedding cache (default: <output-dir>/embedding_cache)"
    )
    output.add_argument(
        "--results-format", choices=("csv", "jsonl"), default="csv", help="results file format"
    )
    output.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    output.add_argument(
        "--progress",
        choices=("auto", "on", "off"),
        default="auto",
        help="progress bars on stderr (auto: when stderr is a terminal)",
    )
    output.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``skcicm`` command; return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # Bare `skcicm` (or options only) means `skcicm evaluate`.
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["evaluate", *argv]
    args = build_parser().parse_args(argv)
    try:
        return _evaluate(args, argv)
    except KeyboardInterrupt:
        print(
            "skcicm: interrupted; embeddings encoded so far are cached, run the same command "
            "again to resume.",
            file=sys.stderr,
        )
        return 130
    except (ValueError, OSError) as error:
        if args.debug:
            raise
        print(f"skcicm: error: {error}", file=sys.stderr)
        return 1


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _resolve(args: argparse.Namespace) -> dict[str, Any]:
    """Validate and resolve the options into protocol settings (raises ValueError)."""
    dataset = args.dataset
    protocol = args.protocol or ("imagenet" if dataset.lower() == "imagenet" else "domain-shift")
    if (protocol == "imagenet") != (dataset.lower() == "imagenet"):
        raise ValueError("--protocol imagenet and --dataset imagenet go together.")
    interventions = _comma_list(args.interventions)
    unknown = sorted(set(interventions) - set(INTERVENTION_SOURCES))
    if unknown:
        raise ValueError(
            f"--interventions: unknown {unknown}; choose from {list(INTERVENTION_SOURCES)}."
        )
    allowed = ZERO_SHOT_METHODS if protocol == "open-class" else tuple(METHODS)
    methods = _comma_list(args.methods) if args.methods else list(allowed)
    bad = [m for m in methods if m not in allowed]
    if bad:
        raise ValueError(
            f"--methods: {bad} do not apply to {protocol}; choose from {list(allowed)}."
        )
    n_components = (
        None if args.n_components == "auto" else _numbers(args.n_components, int, "--n-components")
    )
    for option, value in (
        ("--n-per-cell", args.n_per_cell),
        ("--batch-size", args.batch_size),
        ("--n-interventions", args.n_interventions),
    ):
        if value < 1:
            raise ValueError(f"{option} must be at least 1; got {value}.")
    model = args.model or ("toyclip" if dataset.lower() == "toyworld" else "ViT-B-16")
    pretrained = args.pretrained
    if pretrained is None and args.model is None and model == "ViT-B-16":
        pretrained = "openai"
    return {
        "protocol": protocol,
        "interventions": interventions,
        "methods": methods,
        "lam": _numbers(args.lam, float, "--lam"),
        "n_components": n_components,
        "seeds": _numbers(args.seeds, int, "--seeds"),
        "targets": _comma_list(args.targets) if args.targets else None,
        "domains": _comma_list(args.domains) if args.domains else None,
        "model": model,
        "pretrained": pretrained,
    }


def _text_interventions(dataset: Any) -> list[tuple[str, str]]:
    from skcicm.prompts import style_prompt_pairs

    styles = [d.replace("_", " ") for d in dataset.get("domain_names", [])]
    if len(styles) < 2:
        styles = list(GENERIC_STYLES)
    return style_prompt_pairs(styles, dataset.get("text_template", "a {style} of a {{}}."))


def _evaluate(args: argparse.Namespace, argv: list[str]) -> int:
    settings = _resolve(args)
    started = time.perf_counter()
    from skcicm.evaluation import benchmarks

    protocol = settings["protocol"]
    _log(f"Loading {args.dataset} ...")
    variants = None
    if protocol == "imagenet":
        if args.root is None:
            raise ValueError("--dataset imagenet needs --root, the folder holding imagenet/train.")
        source, variants = benchmarks.load_imagenet_benchmark(
            args.root, variants=settings["targets"], max_per_class=args.max_per_class
        )
        dataset = source
        n_images = len(source.images) + sum(len(v.images) for v in variants.values())
    else:
        dataset = benchmarks.load_benchmark(
            args.dataset, args.root, domains=settings["domains"], n_per_cell=args.n_per_cell
        )
        n_images = len(dataset.images)
    run_name = "imagenet-variants" if protocol == "imagenet" else f"{dataset.name}-{protocol}"
    run_dir = Path(args.output_dir) / run_name
    cache_dir = (
        Path(args.cache_dir) if args.cache_dir else Path(args.output_dir) / "embedding_cache"
    )
    progress = {"auto": "auto", "on": True, "off": False}[args.progress]

    from skcicm.featurizer import CLIPFeaturizer

    featurizer = CLIPFeaturizer(
        settings["model"],
        settings["pretrained"],
        n_interventions=args.n_interventions,
        text_interventions=_text_interventions(dataset)
        if "text" in settings["interventions"]
        else None,
        device=args.device,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        cache_dir=str(cache_dir),
        progress=progress,
    )
    featurizer.fit(None)  # loads the weights now, so that a missing model fails before encoding
    _log(
        f"Encoding {n_images} images with {settings['model']} (cache: {cache_dir}), then "
        f"running {protocol} ..."
    )
    result = _run_protocol(args, settings, featurizer, dataset, variants, progress)
    seconds = time.perf_counter() - started
    written = _write_outputs(args, argv, settings, result, run_dir, seconds)
    print(written["table_text"])
    print(f"\nResults written to {run_dir}/ ({', '.join(written['files'])})")
    return 0


def _run_protocol(
    args: argparse.Namespace,
    settings: dict[str, Any],
    featurizer: Any,
    dataset: Any,
    variants: dict[str, Any] | None,
    progress: bool | str,
) -> Any:
    from skcicm.evaluation import protocols

    common = {
        "interventions": settings["interventions"],
        "templates": args.templates,
        "methods": settings["methods"],
        "lam": settings["lam"],
        "n_components": settings["n_components"],
        "tuning": args.tuning,
        "seeds": settings["seeds"],
        "holdout_fraction": args.holdout_fraction,
        "estimator_params": {"lam_scale": args.lam_scale},
        "progress": progress,
    }
    if settings["protocol"] == "imagenet":
        return protocols.evaluate_imagenet_variants(featurizer, dataset, variants, **common)
    run = (
        protocols.evaluate_open_class
        if settings["protocol"] == "open-class"
        else protocols.evaluate_domain_shift
    )
    return run(featurizer, dataset, targets=settings["targets"], n_jobs=args.n_jobs, **common)


def _write_outputs(
    args: argparse.Namespace,
    argv: list[str],
    settings: dict[str, Any],
    result: Any,
    run_dir: Path,
    seconds: float,
) -> dict[str, Any]:
    from skcicm.evaluation.plots import plot_protocol
    from skcicm.evaluation.reporting import markdown_table, write_rows

    run_dir.mkdir(parents=True, exist_ok=True)
    suffix = args.results_format
    files = [
        write_rows(result.results, run_dir / f"results.{suffix}"),
        write_rows(result.sweep, run_dir / f"sweep.{suffix}"),
    ]
    if result.cv_results:
        files.append(write_rows(result.cv_results, run_dir / f"cv_results.{suffix}"))
    title = f"{result.dataset}, {settings['protocol']}, {settings['model']}"
    open_class = settings["protocol"] == "open-class"
    headline = "harmonic mean of base and novel accuracy" if open_class else "accuracy"
    tables = [markdown_table(result.results, title=f"### {title}: {headline} (%)")]
    if open_class:
        for value in ("base_accuracy", "novel_accuracy"):
            tables.append(
                markdown_table(result.results, value, title=f"### {value.replace('_', ' ')} (%)")
            )
    table_text = "\n\n".join(tables)
    (run_dir / "table.md").write_text(table_text + "\n")
    files.append(run_dir / "table.md")
    if not args.no_plots:
        files.extend(plot_protocol(result.sweep, result.results, run_dir / "plots", title=title))
    record = {
        "command": ["skcicm", *argv],
        "arguments": vars(args),
        "settings": settings,
        "seconds": round(seconds, 1),
    }
    (run_dir / "run.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    files.append(run_dir / "run.json")
    return {"table_text": table_text, "files": [str(f.relative_to(run_dir)) for f in files]}
