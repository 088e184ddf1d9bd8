"""The options of the ``skcicm`` command: one builder per subcommand and option group.

Imports only the protocols' vocabulary (``skcicm.evaluation.options``), so that building
the parser, and ``skcicm --help``, stays fast.
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from typing import NoReturn

from skcicm.evaluation.options import (
    CLI_SHORTCUT_N_PER_CELL,
    CLI_SHORTCUT_SEEDS,
    DEFAULT_COMPONENT_FRACTIONS,
    DEFAULT_INTERVENTIONAL_RULE,
    DEFAULT_LAM,
    DEFAULT_LAM_SCALE,
    DEFAULT_RHO,
    DEFAULT_SELECTION_FOLDS,
    DEFAULT_SHORTCUT,
    INTERVENTION_SOURCES,
    INTERVENTIONAL_RULES,
    LAM_SCALES,
    METHODS,
    TARGET_RELATIONS,
    TUNING,
)

PROTOCOLS = ("domain-shift", "shortcut", "open-class", "imagenet")

DEFAULT_OUTPUT_DIR = "results"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, not usage plus a line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class _DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show each default once: not where the help text already explains it, nor when None."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``skcicm`` command."""
    from skcicm import __version__

    parser = _Parser(
        prog="skcicm",
        description="CLIP-ICM: evaluate invariant causal mechanisms of CLIP under domain shift. "
        "Without arguments, runs 'skcicm evaluate' on the embedded ToyWorld data with ToyCLIP.",
    )
    parser.add_argument("--version", action="version", version=f"skcicm {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    add_evaluate_parser(commands)
    add_report_parser(commands)
    return parser


def add_evaluate_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The ``skcicm evaluate`` subcommand and its option groups."""
    evaluate = commands.add_parser(
        "evaluate",
        help="run an evaluation protocol and write results, table and plots",
        description="Run an evaluation protocol of the CLIP-ICM paper. Every image is encoded "
        "once and cached under the output folder; an interrupted run resumes from the cache. "
        "Splits follow DomainBed: each domain is split 80/20 per seed; models are fitted on the "
        "source domains' 80% and scored on the target domain's 80%.",
        formatter_class=_DefaultsHelpFormatter,
    )
    _add_data_options(evaluate.add_argument_group("data"))
    _add_model_options(evaluate.add_argument_group("model"))
    _add_protocol_options(evaluate.add_argument_group("protocol"))
    _add_output_options(evaluate.add_argument_group("output"))
    return evaluate


def add_report_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The ``skcicm report`` subcommand."""
    report = commands.add_parser(
        "report",
        help="re-render the table and plots of an evaluate run from its results files",
        description="Re-render table.md and the plots of a folder written by 'skcicm evaluate' "
        "from its results and sweep files (CSV or JSON lines), without refitting or encoding "
        "anything; the protocol and model names come from its run.json.",
        formatter_class=_DefaultsHelpFormatter,
    )
    report.add_argument(
        "results_dir",
        metavar="RESULTS_DIR",
        help="a run folder: <output-dir>/<dataset>-<protocol>/, holding results.csv or "
        "results.jsonl",
    )
    report.add_argument("--no-plots", action="store_true", help="rewrite the table only")
    report.add_argument(
        "--full",
        action="store_true",
        help="shortcut runs: also print table_full.md, every head and tuning rule",
    )
    report.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return report


def _fraction_of_d(fraction: float) -> str:
    """``0.25`` as ``d/4``, ``1.0`` as ``d``: a fraction of the embedding dimension d."""
    ratio = Fraction(fraction).limit_denominator(1000)
    numerator = "d" if ratio.numerator == 1 else f"{ratio.numerator}d"
    return numerator if ratio.denominator == 1 else f"{numerator}/{ratio.denominator}"


def _add_data_options(data: argparse._ArgumentGroup) -> None:
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
        "sketch, imagenet-r, imagenet-a); default: none, which only toyworld and a dataset path "
        "allow",
    )
    data.add_argument(
        "--domains",
        help="comma-separated domains to load (default: all of the dataset); shortcut: the "
        "source styles (default: every ToyWorld style but --held-out)",
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


def _add_model_options(model: argparse._ArgumentGroup) -> None:
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


def _add_protocol_options(protocol: argparse._ArgumentGroup) -> None:
    protocol.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        help="domain-shift: fit on the source domains, score each target; shortcut "
        "(toyworld only): sources whose style (or colour, background...) predicts the class, "
        "scored on the source styles with that relation broken (and on a held-out style, "
        "--held-out), average and worst-group accuracy, CLIP-ICM once per intervention "
        "source; open-class: fit on "
        "the base classes (first half, sorted), score base and novel classes of the target "
        "and their harmonic mean; imagenet: fit on ImageNet, score its variants "
        "(default: imagenet for --dataset imagenet; for toyworld both domain-shift and "
        "shortcut, the latter on a smaller world (see --shortcut-n-per-cell); else "
        "domain-shift)",
    )
    protocol.add_argument(
        "--targets",
        help="comma-separated target domains (ImageNet variants for imagenet; default: all)",
    )
    protocol.add_argument(
        "--methods",
        help=f"comma-separated methods among {', '.join(METHODS)} (default: all that apply; "
        "open-class takes the zero-shot ones; shortcut leaves out icm_zero_shot)",
    )
    protocol.add_argument(
        "--lam",
        default=",".join(f"{v:g}" for v in DEFAULT_LAM),
        help="CLIP-ICM penalty weight lambda, or a comma-separated grid",
    )
    protocol.add_argument(
        "--n-components",
        default="auto",
        help="subspace dimension K, or a comma-separated grid; auto = "
        f"{','.join(_fraction_of_d(f) for f in DEFAULT_COMPONENT_FRACTIONS)} for embedding "
        "dimension d",
    )
    protocol.add_argument(
        "--tuning",
        choices=TUNING,
        action="append",
        help="how a grid is resolved; repeat for several rules: source = leave-one-domain-out "
        "CV on the source domains (imagenet: the source's 20%% holdout); interventional = "
        "the same loop scored on the clean and intervened copies of the held-out source "
        "domain, combined by --interventional-rule (needs image or counterfactual copies; "
        "shortcut: augmented copies for text and domain); oracle = best on the target's 20%% "
        "holdout (imagenet: on the variant), an upper bound labelled (oracle) (default: "
        "source; shortcut: all three)",
    )
    protocol.add_argument(
        "--interventional-rule",
        choices=INTERVENTIONAL_RULES,
        help="how --tuning interventional scores a candidate (the rule of "
        "skcicm.model_selection.InterventionalScorer): pooled = accuracy over the clean "
        "images and their copies together; intervened = over the copies alone; worst = the "
        "lower of the clean and the copies' accuracy; worst_view = the lowest of the clean "
        f"accuracy and each view's (default: {DEFAULT_INTERVENTIONAL_RULE})",
    )
    protocol.add_argument(
        "--interventions",
        help=f"comma-separated sources of interventional data (default: image; shortcut: "
        f"all, CLIP-ICM fitted on each alone) among "
        f"{', '.join(INTERVENTION_SOURCES)}: augmented image copies; exact re-renderings of "
        "each image in the other domains' styles (toyworld only; for each target, renderings "
        "in its style are left out); style prompt pairs over the names of the loaded domains "
        "(for each target, pairs naming it are left out); class-conditional contrasts between "
        "source domains",
    )
    protocol.add_argument(
        "--n-interventions", type=int, default=1, help="augmented copies per image"
    )
    protocol.add_argument(
        "--lam-scale",
        choices=LAM_SCALES,
        default=DEFAULT_LAM_SCALE,
        help="trace: lambda relative to tr(Sigma_Z)/tr(Sigma_Delta)",
    )
    _add_shortcut_options(protocol)
    protocol.add_argument(
        "--seeds",
        help="comma-separated DomainBed trial seeds (default: 0,1,2; shortcut: "
        f"{CLI_SHORTCUT_SEEDS[0]} to {CLI_SHORTCUT_SEEDS[-1]}, for narrow 95%% intervals)",
    )
    protocol.add_argument(
        "--holdout-fraction", type=float, default=0.2, help="fraction of each domain held out"
    )
    protocol.add_argument(
        "--n-jobs",
        type=int,
        help="parallel fits in the cross-validation (joblib; default: one at a time)",
    )


def _add_shortcut_options(protocol: argparse._ArgumentGroup) -> None:
    protocol.add_argument(
        "--rho",
        default=",".join(f"{v:g}" for v in DEFAULT_RHO),
        help="shortcut: fraction of each source cell that carries its class's own shortcut "
        "value; a comma-separated list sweeps it and plots accuracy against rho",
    )
    protocol.add_argument(
        "--shortcut",
        default=",".join(DEFAULT_SHORTCUT),
        help="shortcut: comma-separated factor groups that predict the class in the sources, "
        "among colors, background, texture, style (style needs --held-out none)",
    )
    protocol.add_argument(
        "--target-relation",
        choices=TARGET_RELATIONS,
        default=TARGET_RELATIONS[0],
        help="shortcut: in the targets each class carries another class's value "
        "(reassigned) or all values equally often (uncorrelated)",
    )
    protocol.add_argument(
        "--held-out",
        default="none",
        help="shortcut: style of the held-out-style target (e.g. painting, not with a style "
        "shortcut), or none (source-styles target only)",
    )
    protocol.add_argument(
        "--shortcut-n-per-cell",
        type=int,
        default=CLI_SHORTCUT_N_PER_CELL,
        help="shortcut: images per (style, class) cell of the shortcut world, sources and "
        "targets alike (--n-per-cell is the domain-shift data's)",
    )
    protocol.add_argument(
        "--selection-folds",
        type=int,
        default=DEFAULT_SELECTION_FOLDS,
        help="shortcut: source selection (--tuning source, interventional) leaves out one of "
        "this many stratified folds of the source images; 0 leaves out one source style "
        "instead, which selects nothing when the style is the shortcut, since a held-out "
        "style then holds nearly one whole class (default: %(default)s)",
    )


def _add_output_options(output: argparse._ArgumentGroup) -> None:
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
