"""``skcicm evaluate``: load a dataset, encode it once, run a protocol, write its outputs."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from skcicm.evaluation.options import (
    CLI_SHORTCUT_METHODS,
    CLI_SHORTCUT_SEEDS,
    DEFAULT_SELECTION_FOLDS,
    INTERVENTION_SOURCES,
    METHODS,
    TUNING,
    ZERO_SHOT_METHODS,
    check_listed,
    check_n_jobs,
)
from skcicm.prompts import check_class_templates

# What earlier runs wrote into a run folder; removed before writing, so none outlives its run.
RUN_OUTPUTS = ("results", "sweep", "cv_results")
RUN_FILES = ("table.md", "table_full.md", "run.json")


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _listed(text: str, option: str) -> list[str]:
    """A comma-separated option's values; empty or repeated values are refused."""
    return check_listed(_comma_list(text), option)


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
    return check_listed(values, option)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _protocols(args: argparse.Namespace) -> list[str]:
    dataset = args.dataset.lower()
    if args.protocol is not None:
        protocols = [args.protocol]
    elif dataset == "imagenet":
        protocols = ["imagenet"]
    elif dataset == "toyworld":
        protocols = ["domain-shift", "shortcut"]
    else:
        protocols = ["domain-shift"]
    if ("imagenet" in protocols) != (dataset == "imagenet"):
        raise ValueError("--protocol imagenet and --dataset imagenet go together.")
    if "shortcut" in protocols and dataset != "toyworld":
        raise ValueError(
            "--protocol shortcut needs --dataset toyworld: it draws ToyWorld images whose "
            "styles, colours or backgrounds predict the class."
        )
    return protocols


def _resolve(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Validate and resolve the options into the settings of each protocol to run (raises
    ValueError)."""
    protocols = _protocols(args)
    if args.selection_folds != DEFAULT_SELECTION_FOLDS and "shortcut" not in protocols:
        raise ValueError(
            "--selection-folds applies to --protocol shortcut; domain-shift protocols leave "
            "one source domain out."
        )
    if args.shortcut_n_per_cell < 1:
        raise ValueError(
            f"--shortcut-n-per-cell must be at least 1; got {args.shortcut_n_per_cell}."
        )
    return [_resolve_protocol(args, protocol) for protocol in protocols]


def _resolve_protocol(args: argparse.Namespace, protocol: str) -> dict[str, Any]:
    dataset = args.dataset
    shortcut = protocol == "shortcut"
    default_interventions = ",".join(INTERVENTION_SOURCES) if shortcut else "image"
    default_seeds = ",".join(str(s) for s in CLI_SHORTCUT_SEEDS) if shortcut else "0,1,2"
    interventions = _listed(args.interventions or default_interventions, "--interventions")
    tuning = args.tuning or (list(TUNING) if shortcut else ["source"])
    check_listed(tuning, "--tuning")
    unknown = sorted(set(interventions) - set(INTERVENTION_SOURCES))
    if unknown:
        raise ValueError(
            f"--interventions: unknown {unknown}; choose from {list(INTERVENTION_SOURCES)}."
        )
    if "counterfactual" in interventions and dataset.lower() != "toyworld":
        raise ValueError(
            f"--interventions counterfactual needs --dataset toyworld: {dataset!r} cannot "
            "re-render its images in another domain's style; use image, text or domain."
        )
    if {"image", "counterfactual"} <= set(interventions) and not shortcut:
        raise ValueError("--interventions: image and counterfactual are exclusive; choose one.")
    if "interventional" in tuning and protocol == "imagenet":
        raise ValueError(
            "--tuning interventional needs several source domains to leave one out; the "
            "ImageNet source is one domain."
        )
    if (
        "interventional" in tuning
        and not shortcut
        and not {"image", "counterfactual"} & set(interventions)
    ):
        raise ValueError(
            "--tuning interventional scores on intervened copies of the held-out source "
            "images: add image or counterfactual to --interventions."
        )
    allowed = ZERO_SHOT_METHODS if protocol == "open-class" else tuple(METHODS)
    default_methods = CLI_SHORTCUT_METHODS if shortcut else allowed
    methods = _listed(args.methods, "--methods") if args.methods else list(default_methods)
    bad = [m for m in methods if m not in allowed]
    if bad:
        raise ValueError(
            f"--methods: {bad} do not apply to {protocol}; choose from {list(allowed)}."
        )
    lam = _numbers(args.lam, float, "--lam")
    from skcicm.model_selection._params import MAX_LAM

    bad_lam = [value for value in lam if not (math.isfinite(value) and 0 <= value <= MAX_LAM)]
    if bad_lam:
        raise ValueError(
            f"--lam: values must be finite numbers in [0, {MAX_LAM:g}]; got {bad_lam}."
        )
    n_components = (
        None if args.n_components == "auto" else _numbers(args.n_components, int, "--n-components")
    )
    if n_components is not None and min(n_components) < 1:
        raise ValueError(f"--n-components: values must be at least 1; got {n_components}.")
    if not 0.0 < args.holdout_fraction < 1.0:
        raise ValueError(
            f"--holdout-fraction must be between 0 and 1 (exclusive); got {args.holdout_fraction}."
        )
    if args.templates is not None:
        check_class_templates(args.templates, "--template")
    try:
        check_n_jobs(args.n_jobs)
    except ValueError as error:
        raise ValueError(f"--{error}".replace("n_jobs", "n-jobs", 1)) from None
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
    extra: dict[str, Any] = {}
    if shortcut:
        extra = _resolve_shortcut(args, interventions)
    return {
        "protocol": protocol,
        "interventions": interventions,
        "tuning": tuning,
        **extra,
        "methods": methods,
        "lam": lam,
        "n_components": n_components,
        "seeds": _numbers(args.seeds or default_seeds, int, "--seeds"),
        "targets": None if args.targets is None else _listed(args.targets, "--targets"),
        "domains": None if args.domains is None else _listed(args.domains, "--domains"),
        "model": model,
        "pretrained": pretrained,
    }


def _resolve_shortcut(args: argparse.Namespace, interventions: list[str]) -> dict[str, Any]:
    from skcicm.evaluation.protocols.shortcut import check_shortcut_settings

    if args.targets and args.protocol == "shortcut":
        raise ValueError(
            "--targets does not apply to --protocol shortcut: its targets are the held-out "
            "style (--held-out) and the source styles."
        )
    rho = _numbers(args.rho, float, "--rho")
    factors = _comma_list(args.shortcut)
    held_out = None if args.held_out.lower() == "none" else args.held_out
    sources = None if args.domains is None else _listed(args.domains, "--domains")
    try:
        check_shortcut_settings(
            rho,
            factors,
            args.target_relation,
            held_out,
            sources,
            args.shortcut_n_per_cell,
            interventions,
        )
    except ValueError as error:
        raise ValueError(
            f"--rho / --shortcut / --held-out / --shortcut-n-per-cell: {error}"
        ) from None
    return {"rho": rho, "shortcut": factors, "held_out": held_out, "sources": sources}


def run_evaluate(args: argparse.Namespace, argv: list[str]) -> int:
    """Run ``skcicm evaluate`` with parsed ``args``; return the exit status (raises ValueError)."""
    runs = _resolve(args)
    for number, settings in enumerate(runs):
        if number:
            print()
        if settings["protocol"] == "shortcut":
            _run_shortcut(args, argv, settings)
        else:
            _run_dataset_protocol(args, argv, settings)
    return 0


def limit_torch_threads(num_workers: int) -> int:
    """Keep torch's threads plus ``num_workers`` decoding threads within this process's cores.

    CLIPFeaturizer's documentation advises it for CPU runs; the command line follows it: on a
    2-core machine, two torch threads beside two decoding threads about doubled the default
    run's CPU time (148 s instead of 68 s at the time it was measured), with the same tables.
    A lower limit set by the user (``OMP_NUM_THREADS``) is kept. Returns the limit.
    """
    import torch

    affinity = getattr(os, "sched_getaffinity", None)
    cores = len(affinity(0)) if affinity is not None else os.cpu_count() or 1
    threads = max(1, min(torch.get_num_threads(), cores - num_workers))
    torch.set_num_threads(threads)
    return threads


def _featurizer(args: argparse.Namespace, settings: dict[str, Any], cache_dir: Path, **params):
    from skcicm.featurizer import CLIPFeaturizer

    limit_torch_threads(args.num_workers)

    return CLIPFeaturizer(
        settings["model"],
        settings["pretrained"],
        n_interventions=args.n_interventions,
        device=args.device,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        cache_dir=str(cache_dir),
        progress={"auto": "auto", "on": True, "off": False}[args.progress],
        **params,
    )


def _check_dimension(featurizer: Any, settings: dict[str, Any]) -> None:
    """Check --n-components against the model's configuration, before its weights load."""
    from skcicm.evaluation.preflight import embedding_dim

    _check_n_components(settings["n_components"], embedding_dim(featurizer))


def _cache_dir(args: argparse.Namespace) -> Path:
    return Path(args.cache_dir) if args.cache_dir else Path(args.output_dir) / "embedding_cache"


def _run_shortcut(args: argparse.Namespace, argv: list[str], settings: dict[str, Any]) -> None:
    from skcicm.evaluation.protocols.shortcut import shortcut

    started = time.perf_counter()
    run_dir = Path(args.output_dir) / "toyworld-shortcut"
    _check_writable(run_dir)
    featurizer = _featurizer(args, settings, _cache_dir(args))
    _check_dimension(featurizer, settings)
    _load_model(featurizer)  # a missing model fails before anything is encoded
    _log(
        f"Drawing and encoding shortcut worlds ({args.shortcut_n_per_cell} per cell, rho "
        f"{settings['rho']}) with {settings['model']}, then running shortcut ..."
    )
    result = shortcut(
        featurizer,
        rho=settings["rho"],
        shortcut_factors=settings["shortcut"],
        target_relation=args.target_relation,
        held_out=settings["held_out"],
        sources=settings["sources"],
        n_per_cell=args.shortcut_n_per_cell,
        interventions=settings["interventions"],
        methods=settings["methods"],
        lam=settings["lam"],
        n_components=settings["n_components"],
        tuning=settings["tuning"],
        interventional_rule=args.interventional_rule,
        selection_folds=args.selection_folds or None,
        seeds=settings["seeds"],
        holdout_fraction=args.holdout_fraction,
        estimator_params={"lam_scale": args.lam_scale},
        n_jobs=args.n_jobs,
        progress={"auto": "auto", "on": True, "off": False}[args.progress],
    )
    seconds = time.perf_counter() - started
    written = _write_outputs(args, argv, settings, result, run_dir, seconds)
    print(written["table_text"])
    print(f"\nResults written to {run_dir}/ ({', '.join(written['files'])})")


def _run_dataset_protocol(
    args: argparse.Namespace, argv: list[str], settings: dict[str, Any]
) -> None:
    started = time.perf_counter()
    from skcicm.datasets import registry

    protocol = settings["protocol"]
    _log(f"Loading {args.dataset} ...")
    variants = None
    if protocol == "imagenet":
        if args.root is None:
            raise ValueError("--dataset imagenet needs --root, the folder holding imagenet/train.")
        source, variants = registry.load_imagenet_datasets(
            args.root, variants=settings["targets"], max_per_class=args.max_per_class
        )
        dataset = source
        n_images = len(source.images) + sum(len(v.images) for v in variants.values())
    else:
        dataset = registry.load_dataset(
            args.dataset, args.root, domains=settings["domains"], n_per_cell=args.n_per_cell
        )
        n_images = len(dataset.images)
    run_name = "imagenet-variants" if protocol == "imagenet" else f"{dataset.name}-{protocol}"
    run_dir = Path(args.output_dir) / run_name
    _check_writable(run_dir)
    cache_dir = _cache_dir(args)
    progress = {"auto": "auto", "on": True, "off": False}[args.progress]

    from skcicm.prompts import domain_prompt_pairs

    featurizer = _featurizer(
        args,
        settings,
        cache_dir,
        text_interventions=domain_prompt_pairs(
            dataset.get("domain_names", []), dataset.get("text_template", "a {style} of a {{}}.")
        )
        if "text" in settings["interventions"]
        else None,
    )
    check, evaluate = _protocol_functions(protocol)
    data = (dataset,) if variants is None else (dataset, variants)
    options = _protocol_options(args, settings, progress)
    # Options fail before the weights are loaded (or downloaded), a missing model before the
    # first image is encoded.
    _check_dimension(featurizer, settings)
    _check_options(
        args, check, featurizer, *data, interventions=settings["interventions"], **options
    )
    _load_model(featurizer)
    _log(
        f"Encoding {n_images} images with {settings['model']} (cache: {cache_dir}), then "
        f"running {protocol} ..."
    )
    note = _few_sources_note(dataset, settings) if protocol != "imagenet" else None
    if note:
        _log(note)
    result = evaluate(
        featurizer,
        *data,
        interventions=settings["interventions"],
        templates=args.templates,
        **options,
    )
    seconds = time.perf_counter() - started
    written = _write_outputs(args, argv, settings, result, run_dir, seconds)
    print(written["table_text"])
    if note:
        print(f"\n{note}")
    print(f"\nResults written to {run_dir}/ ({', '.join(written['files'])})")


def _few_sources_note(dataset: Any, settings: dict[str, Any]) -> str | None:
    """A warning line when leave-one-domain-out tuning has only two source domains per target:
    every candidate is then fitted on one domain and scored on the other."""
    n_domains = len(dataset.get("domain_names", []))
    source_rules = {"source", "interventional"} & set(settings["tuning"])
    if n_domains != 3 or not source_rules:
        return None
    return (
        f"skcicm: warning: {n_domains} domains leave 2 source domains for each target, so "
        "leave-one-domain-out tuning fits every candidate on one source domain and scores it "
        'on the other, which says little about transfer to the target (user guide, "Model '
        'selection on the source domains"). Four or more domains make the choice of lam and '
        "K more trustworthy."
    )


def _check_writable(run_dir: Path) -> None:
    """Fail now, not after the encoding, when the results cannot be written.

    The folders made for the check are removed again, so that a run that fails before
    writing anything (a missing model, a bad option) leaves no empty run folder behind.
    """
    created = [folder for folder in (run_dir, *run_dir.parents) if not folder.exists()]
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=run_dir):
            pass
    except OSError as error:
        raise OSError(
            f"--output-dir: cannot write results to {str(run_dir)!r} ({error.strerror or error})."
        ) from None
    finally:
        for folder in created:  # deepest first; a folder something else wrote to stays
            with contextlib.suppress(OSError):
                folder.rmdir()


def _load_model(featurizer: Any) -> None:
    """Load the model's weights before anything is encoded; the advice for missing weights
    names the command line's options, not the Python arguments."""
    from skcicm.featurizer._models import WeightsFileError, WeightsUnavailableError

    try:
        featurizer.fit(None)
    except WeightsUnavailableError as error:
        if isinstance(error, WeightsFileError) or not hasattr(error, "cause"):
            raise
        raise WeightsUnavailableError(
            f"Could not load the weights of --model {error.model_name} (--pretrained "
            f"{error.pretrained}): {error.cause.rstrip('.')}. Without internet, supply them "
            "from disk: download them once where there is a network (open_clip caches them under "
            "~/.cache/huggingface; copy that folder to this machine), or pass --pretrained "
            "/path/to/checkpoint.pt, or --model local-dir:/path/to/folder holding "
            "open_clip_config.json and open_clip_model.safetensors. --model toyclip runs "
            "offline."
        ) from None


def _check_n_components(n_components: list[int] | None, n_features: int) -> None:
    if n_components is not None and max(n_components) > n_features:
        raise ValueError(
            f"--n-components: values must be at most {n_features}, the model's embedding "
            f"dimension; got {n_components}."
        )


def _remove_earlier_outputs(run_dir: Path) -> None:
    for stem in RUN_OUTPUTS:
        for suffix in ("csv", "jsonl"):
            (run_dir / f"{stem}.{suffix}").unlink(missing_ok=True)
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    for plot in (run_dir / "plots").glob("*.png"):
        plot.unlink()


def _protocol_functions(protocol: str) -> tuple[Any, Any]:
    """The library's check of a protocol's options and its ``evaluate_*`` entry point."""
    from skcicm.evaluation import protocols

    return {
        "domain-shift": (protocols.check_domain_shift_options, protocols.evaluate_domain_shift),
        "open-class": (protocols.check_open_class_options, protocols.evaluate_open_class),
        "imagenet": (
            protocols.check_imagenet_variants_options,
            protocols.evaluate_imagenet_variants,
        ),
    }[protocol]


def _protocol_options(
    args: argparse.Namespace, settings: dict[str, Any], progress: bool | str
) -> dict[str, Any]:
    """The keyword arguments of the protocol function (``domain_shift``...)."""
    options = {
        "methods": settings["methods"],
        "lam": settings["lam"],
        "n_components": settings["n_components"],
        "tuning": settings["tuning"],
        "seeds": settings["seeds"],
        "holdout_fraction": args.holdout_fraction,
        "estimator_params": {"lam_scale": args.lam_scale},
        "progress": progress,
    }
    if settings["protocol"] != "imagenet":
        options.update(
            targets=settings["targets"],
            n_jobs=args.n_jobs,
            interventional_rule=args.interventional_rule,
        )
    return options


def _check_options(args: argparse.Namespace, check: Any, *data: Any, **options: Any) -> None:
    """Run the library's check of the options before anything is encoded.

    Its messages start with the parameter they are about (``holdout_fraction: ...``); one
    that is an option of the command line is named by its flag (``--holdout-fraction: ...``).
    """
    try:
        check(*data, **options)
    except ValueError as error:
        name, colon, rest = str(error).partition(": ")
        if colon and name in vars(args):
            raise ValueError(f"--{name.replace('_', '-')}: {rest}") from None
        raise


def _write_outputs(
    args: argparse.Namespace,
    argv: list[str],
    settings: dict[str, Any],
    result: Any,
    run_dir: Path,
    seconds: float,
) -> dict[str, Any]:
    from skcicm.cli.report import render_run
    from skcicm.evaluation.reporting import write_rows

    run_dir.mkdir(parents=True, exist_ok=True)
    _remove_earlier_outputs(run_dir)
    suffix = args.results_format
    files = [
        write_rows(result.results, run_dir / f"results.{suffix}"),
        write_rows(result.sweep, run_dir / f"sweep.{suffix}"),
    ]
    if result.cv_results:
        files.append(write_rows(result.cv_results, run_dir / f"cv_results.{suffix}"))
    table_text, rendered = render_run(
        result.results,
        result.sweep,
        run_dir,
        title=f"{result.dataset}, {settings['protocol']}, {settings['model']}",
        protocol=settings["protocol"],
        plots=not args.no_plots,
    )
    files.extend(rendered)
    record = {
        "command": ["skcicm", *argv],
        "arguments": vars(args),
        "settings": settings,
        "seconds": round(seconds, 1),
    }
    (run_dir / "run.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    files.append(run_dir / "run.json")
    return {"table_text": table_text, "files": [str(f.relative_to(run_dir)) for f in files]}
