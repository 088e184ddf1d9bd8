"""Where CLIP-ICM pays off: a shortcut study on ToyWorld with the shipped ToyCLIP.

In the five source styles each shape mostly carries "its" colour and background pattern
(``rho`` = 0.95, :func:`skcicm.datasets.make_toyworld_shortcut`); in the target style,
painting, every shape carries another shape's colour and background. A linear probe trained on
the sources can lean on that shortcut. The study compares, per seed, the CLIP linear probe with
CLIP-ICM linear probes (``lam_scale="trace"``) whose Deltas come from one source at a time:

``domain``
    class-conditional mean contrasts between the source domains;
``augment``
    the authors' image augmentations, two copies per source image;
``counterfactual``
    exact re-renderings of each source image with another colour and background, two copies;
``text``
    prompt pairs that differ only in the colour word ("a photo of a red star" / "... blue
    star"), :func:`skcicm.prompts.attribute_prompt_pairs`.

``lam`` and ``n_components`` are chosen by three rules: the *oracle* (best target accuracy: it
looks at the target, an upper bound, not a result); leave-one-domain-out over the sources
scored by *clean* held-out accuracy; and the same loop scored by
:class:`skcicm.model_selection.InterventionalScorer` on the intervened copies of the held-out
source samples, alone (``intervened``) or pooled with the clean ones (``pooled``). The copies
the scorer sees are the candidate's own for ``augment`` and ``counterfactual`` and the
augmentations for ``domain`` and ``text``, which have no per-sample copies. They are routed to
the scorer as metadata (``set_score_request(interventions="validation_views")``).

A control row fits the CLIP probe on sources drawn with ``rho`` = 0.1 (one class in ten: no
shortcut) and scores it on the same kind of target, to show what the shortcut itself costs.

``--domain-shift`` runs the same comparison on plain ToyWorld (no shortcut, target painting),
with counterfactual *style* changes and style-word text pairs, to see whether the
interventional rule hurts where there is no shortcut.

Only the public API is used. Each image is encoded once; every candidate is fitted on the
embeddings. Usage::

    python benchmarks/shortcut_study.py                  # 3 seeds, as in the report
    python benchmarks/shortcut_study.py --domain-shift   # also the plain domain-shift data
    python benchmarks/shortcut_study.py --seeds 0 --n-per-cell 8   # smoke run

Writes ``results.csv`` (one row per scenario x seed x source x rule) and ``sweep.csv``
(target accuracy of every grid point) to ``--output-dir`` and prints the tables.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, LeaveOneGroupOut, ParameterGrid
from sklearn.utils import Bunch
from threadpoolctl import threadpool_limits

from skcicm import CLIPFeaturizer, InvariantCausalMechanism
from skcicm.datasets import (
    TOYWORLD_COLORS,
    make_toyworld,
    make_toyworld_shortcut,
    render_counterfactuals,
    worst_group_accuracy,
)
from skcicm.evaluation.reporting import mean_confidence_interval, write_rows
from skcicm.icm._estimator import DEFAULT_PROBE_C
from skcicm.model_selection import InterventionalScorer
from skcicm.prompts import attribute_prompt_pairs, pairs_without_words, style_prompt_pairs

SOURCE_STYLES = ("photo", "sketch", "cartoon", "mosaic", "neon")
TARGET_STYLE = "painting"
SOURCES = ("domain", "augment", "counterfactual", "text")
RULES = ("oracle", "clean", "intervened", "pooled")
CONTROL = "CLIP probe, control: sources without the shortcut"
GRID = {"lam": [0.0, 0.3, 1.0, 3.0, 10.0, 30.0], "n_components": [16, 32, 64, 128]}


def _encode_views(featurizer: CLIPFeaturizer, copies: list[np.ndarray]) -> np.ndarray:
    """Clean embeddings of each set of copies, stacked sample-major (n, n_copies, d)."""
    return np.stack([featurizer.transform(images) for images in copies], axis=1)


def embed_shortcut(seed: int, n_per_cell: int, rho: float, with_views: bool = True) -> Bunch:
    """The shortcut world of one seed, encoded once: sources, views, text pairs, target."""
    world = make_toyworld_shortcut(
        n_per_cell,
        domains=SOURCE_STYLES,
        target_domain=TARGET_STYLE,
        shortcut=("colors", "background"),
        rho=rho,
        target="reassigned",
        random_state=2025 + seed,
    )
    source = np.flatnonzero(~world.is_target)
    pairs = attribute_prompt_pairs(list(TOYWORLD_COLORS), template="a photo of a {attribute} {}")
    if not with_views:
        return _embed(world, source, None, None, seed)
    twins = [
        render_counterfactuals(
            world, change=world.shortcut, indices=source, random_state=100 * seed + copy
        )
        for copy in range(2)
    ]
    return _embed(world, source, twins, pairs, seed)


def embed_domain_shift(seed: int, n_per_cell: int) -> Bunch:
    """Plain ToyWorld (no shortcut): sources and the painting target drawn independently."""
    sources = make_toyworld(n_per_cell, domains=SOURCE_STYLES, random_state=2025 + seed)
    target = make_toyworld(n_per_cell, domains=[TARGET_STYLE], random_state=3025 + seed)
    world = Bunch(
        images=np.concatenate([sources.images, target.images]),
        labels=np.concatenate([sources.labels, target.labels]),
        domains=np.concatenate([sources.domains, target.domains]),
        class_names=sources.class_names,
        is_target=np.repeat([False, True], [len(sources.labels), len(target.labels)]),
        # Without a shortcut the groups are the classes.
        groups=np.concatenate([sources.labels, target.labels]),
    )
    source = np.flatnonzero(~world.is_target)
    # Counterfactuals change the style among the *source* styles only.
    twins = [
        render_counterfactuals(sources, change="style", random_state=100 * seed + copy)
        for copy in range(2)
    ]
    pairs = style_prompt_pairs(list(SOURCE_STYLES))
    return _embed(world, source, twins, pairs, seed)


def _embed(
    world: Bunch, source: np.ndarray, twins: list | None, pairs: list | None, seed: int
) -> Bunch:
    """Encode the clean images, and the views and text pairs unless ``twins`` is None."""
    featurizer = CLIPFeaturizer(
        "toyclip",
        pretrained=None,
        n_interventions=2,
        text_interventions=None if pairs is None else pairs_without_words(pairs, [TARGET_STYLE]),
        class_names=list(world.class_names),
        random_state=seed,
        progress=False,
        num_workers=0,
    )
    target = np.flatnonzero(world.is_target)
    images = world.images[source]
    data = Bunch(
        Z=featurizer.transform(images),
        y=world.labels[source],
        domains=np.asarray(world.domains)[source],
        Z_target=featurizer.transform(world.images[target]),
        y_target=world.labels[target],
        groups_target=world.groups[target],
    )
    if twins is not None:
        # Views-major from the featurizer today; sample-major for GridSearchCV's splits.
        data.augment = featurizer.intervention_embeddings(images)
        data.counterfactual = _encode_views(featurizer, twins)
        data.pairs = featurizer.text_intervention_pairs()
    return data


def _fit_params(data: Bunch, source: str) -> dict:
    if source == "domain":
        return {"domains": data.domains}
    if source == "text":
        return {"intervention_pairs": data.pairs}
    return {"interventions": data[source]}


def run_source(data: Bunch, source: str) -> tuple[dict, list[dict]]:
    """Every rule's choice and the target accuracy of every grid point, for one source."""
    fit_params = _fit_params(data, source)
    validation_views = data[source] if source in ("augment", "counterfactual") else data.augment
    icm = InvariantCausalMechanism(lam_scale="trace")
    scoring = {
        "clean": "accuracy",
        "intervened": InterventionalScorer(rule="intervened").set_score_request(
            interventions="validation_views"
        ),
        "pooled": InterventionalScorer(rule="pooled").set_score_request(
            interventions="validation_views"
        ),
    }
    search = GridSearchCV(
        icm.set_fit_request(**dict.fromkeys(fit_params, True)),
        GRID,
        cv=LeaveOneGroupOut(),
        scoring=scoring,
        refit=False,
        error_score="raise",
    )
    search.fit(data.Z, data.y, groups=data.domains, validation_views=validation_views, **fit_params)
    sweep = []
    for params in ParameterGrid(GRID):
        fitted = InvariantCausalMechanism(lam_scale="trace", **params).fit(
            data.Z, data.y, **fit_params
        )
        predicted = fitted.predict(data.Z_target)
        sweep.append(
            {
                **params,
                "accuracy": float(np.mean(predicted == data.y_target)),
                "worst_group": worst_group_accuracy(data.y_target, predicted, data.groups_target),
            }
        )
    chosen = {"oracle": int(np.argmax([row["accuracy"] for row in sweep]))}
    # GridSearchCV's candidates follow ParameterGrid order, so indices match the sweep.
    for rule in ("clean", "intervened", "pooled"):
        chosen[rule] = int(np.argmin(search.cv_results_[f"rank_test_{rule}"]))
    return chosen, sweep


def clip_probe(data: Bunch, scenario: str, seed: int, source: str = "none (CLIP probe)") -> dict:
    probe = LogisticRegression(C=DEFAULT_PROBE_C, max_iter=1000).fit(data.Z, data.y)
    predicted = probe.predict(data.Z_target)
    return {
        "scenario": scenario,
        "seed": seed,
        "source": source,
        "rule": "-",
        "lam": 0.0,
        "n_components": data.Z.shape[1],
        "accuracy": float(np.mean(predicted == data.y_target)),
        "worst_group": worst_group_accuracy(data.y_target, predicted, data.groups_target),
    }


def run_seed(data: Bunch, scenario: str, seed: int) -> tuple[list[dict], list[dict]]:
    base = {"scenario": scenario, "seed": seed}
    rows = [clip_probe(data, scenario, seed)]
    sweep_rows = []
    for source in SOURCES:
        chosen, sweep = run_source(data, source)
        rows.extend({**base, "source": source, "rule": r, **sweep[i]} for r, i in chosen.items())
        sweep_rows.extend({**base, "source": source, **row} for row in sweep)
    return rows, sweep_rows


def _interval(values: list[float]) -> str:
    mean, half = mean_confidence_interval(100 * np.asarray(values))
    return f"{mean:.1f} ± {half:.1f}"


def report(rows: list[dict], scenario: str) -> str:
    lines = [
        f"### {scenario}: target accuracy, its gain over the CLIP probe of the same seed "
        "(paired) and worst-group accuracy (%, mean ± 95% t-interval over seeds); chosen "
        "(lam, K) per seed",
        "",
        "| source | rule | accuracy | gain | worst group | chosen (lam, K) |",
        "|---|---|---|---|---|---|",
    ]
    baseline = {
        r["seed"]: r["accuracy"]
        for r in rows
        if (r["scenario"], r["source"]) == (scenario, "none (CLIP probe)")
    }
    keys = [("none (CLIP probe)", "-"), (CONTROL, "-")] + [(s, r) for s in SOURCES for r in RULES]
    for source, rule in keys:
        group = [
            r for r in rows if (r["scenario"], r["source"], r["rule"]) == (scenario, source, rule)
        ]
        if not group:
            continue
        chosen = ", ".join(f"({r['lam']:g}, {r['n_components']})" for r in group)
        label = "oracle (target-chosen)" if rule == "oracle" else rule
        lines.append(
            f"| {source} | {label} | {_interval([r['accuracy'] for r in group])} | "
            f"{_interval([r['accuracy'] - baseline[r['seed']] for r in group])} | "
            f"{_interval([r['worst_group'] for r in group])} | {chosen} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-per-cell", type=int, default=20)
    parser.add_argument("--rho", type=float, default=0.95)
    parser.add_argument("--domain-shift", action="store_true", help="also run plain ToyWorld")
    parser.add_argument("--output-dir", type=Path, default=Path("results/shortcut_study"))
    args = parser.parse_args(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    sklearn.set_config(enable_metadata_routing=True)

    scenarios = [("shortcut", lambda s: embed_shortcut(s, args.n_per_cell, args.rho))]
    if args.domain_shift:
        scenarios.append(("domain shift", lambda s: embed_domain_shift(s, args.n_per_cell)))
    rows, sweep_rows = [], []
    start = time.perf_counter()
    with threadpool_limits(1):
        for scenario, embed in scenarios:
            for seed in args.seeds:
                tick = time.perf_counter()
                data = embed(seed)
                seed_rows, seed_sweep = run_seed(data, scenario, seed)
                if scenario == "shortcut":
                    # Same world parameters, but rho = 1 / n_classes: what the shortcut costs.
                    control = embed_shortcut(seed, args.n_per_cell, 0.1, with_views=False)
                    seed_rows.append(clip_probe(control, scenario, seed, CONTROL))
                rows += seed_rows
                sweep_rows += seed_sweep
                print(f"{scenario}, seed {seed}: {time.perf_counter() - tick:.0f} s", flush=True)
    write_rows(rows, args.output_dir / "results.csv")
    write_rows(sweep_rows, args.output_dir / "sweep.csv")
    for scenario, _ in scenarios:
        print()
        print(report(rows, scenario))
    print(f"\nwall time {time.perf_counter() - start:.0f} s; results in {args.output_dir}")


if __name__ == "__main__":
    main()
