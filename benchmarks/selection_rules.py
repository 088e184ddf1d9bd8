"""Which InterventionalScorer rule selects CLIP-ICM well without the target.

Source-only selection (leave-one-source-style-out, :class:`InvariantCausalMechanismCV` through
the protocols' ``tuning="interventional"``) scores every candidate on the held-out source
style's clean images and their intervened copies; ``InterventionalScorer(rule=...)`` says how:

``pooled``
    accuracy over clean images and copies together;
``intervened``
    accuracy over the copies alone;
``worst``
    the lower of the clean and the copies' accuracy;
``worst_view``
    the lowest of the clean accuracy and each view's accuracy.

For reference, ``clean`` is the same loop scored on clean held-out images
(``tuning="source"``), and ``oracle`` picks on the target's held-out part (it looks at the
target: an upper bound, not a result). The CLIP probe is the baseline of the gains (paired by
seed).

Two settings, both through the protocols (:func:`skcicm.evaluation.protocols.shortcut.shortcut`
and :func:`skcicm.evaluation.evaluate_domain_shift`), so that each image is encoded once per
seed (the featurizer's embedding cache) and every rule reuses the embeddings:

* the **shortcut** world at the protocol's defaults (the calibrated world: the
  style predicts the class in a fraction ``rho`` of each source cell; the target, in the
  same styles, gives each class another class's style), for each ``rho`` and each
  intervention source (``image``: the paper's augmentations; ``counterfactual``: exact
  re-renderings with the shortcut changed; ``text``: prompt pairs that differ in the
  shortcut's words; ``domain``: contrasts between the source styles);
* plain **domain shift** on ToyWorld (no shortcut): each style the target in turn, with the
  augmentations and with exact style counterfactuals.

Usage::

    python benchmarks/selection_rules.py --out results/selection_rules
    python benchmarks/selection_rules.py --seeds 0 --rho 0.95 --out /tmp/smoke  # smoke run

Writes ``results.csv`` (one row per setting x seed x rule) and ``table.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import functools
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from skcicm import CLIPFeaturizer, NoInterventionError
from skcicm.datasets import make_toyworld
from skcicm.evaluation import evaluate_domain_shift
from skcicm.evaluation.options import INTERVENTION_SOURCES, INTERVENTIONAL_RULES
from skcicm.evaluation.protocols.shortcut import SOURCE_STYLES_TARGET, shortcut
from skcicm.evaluation.reporting import mean_confidence_interval, write_rows
from skcicm.model_selection import InterventionalScorer

RHOS = (0.5, 0.8, 0.9, 0.95, 0.99)
METHODS = ["clip_linear_probe", "icm_linear_probe"]
DEFAULT = InterventionalScorer().rule
LABELS = {"source-lodo": "clean", "target-oracle": "oracle (target-chosen)"}


def _featurizer(seed: int) -> CLIPFeaturizer:
    return CLIPFeaturizer(
        "toyclip", n_interventions=2, random_state=seed, progress=False, num_workers=0
    )


def _rows(results: list[dict], setting: str, rule: str) -> list[dict]:
    """Target rows of one protocol run: the CLIP probe and each rule's CLIP-ICM choice.

    The references (CLIP probe, clean, oracle) come from the run of the default rule only."""
    rows = []
    for r in results:
        if r["target"] != SOURCE_STYLES_TARGET and setting == "shortcut":
            continue
        if r["tuning"] == "none":
            if setting == "domain shift" and r["interventions"] != "image":
                continue
            name = "CLIP probe"
        elif r["tuning"] == "source-lodo-interventional":
            name = r["interventional_rule"]
        else:
            name = LABELS[r["tuning"]]
        if rule != DEFAULT and name in ("CLIP probe", "clean", LABELS["target-oracle"]):
            continue
        rows.append(
            {
                "setting": setting,
                "rho": r.get("rho", "-"),
                "interventions": "none" if name == "CLIP probe" else r["interventions"],
                "target": r["target"],
                "seed": r["seed"],
                "rule": name,
                "lam": r["lam"],
                "n_components": r["n_components"],
                "accuracy": r["accuracy"],
            }
        )
    return rows


def run_shortcut(
    seed: int, rhos: list[float], n_per_cell: int | None, folds: int | None, skipped: list[str]
) -> list[dict]:
    """Every rule on every (rho, intervention source) of one seed's shortcut worlds.

    A source that gives no Deltas in some world (domain contrasts when no class occurs in two
    source styles) is left out of that world and recorded in ``skipped``."""
    featurizer = _featurizer(seed)
    rows = []
    for rho in rhos:
        sources = list(INTERVENTION_SOURCES)
        # The first rule also runs the references; the featurizer's cache serves the others.
        for rule in [DEFAULT, *(r for r in INTERVENTIONAL_RULES if r != DEFAULT)]:
            first = rule == DEFAULT
            run = functools.partial(
                shortcut,
                featurizer,
                rho=[rho],
                methods=METHODS if first else METHODS[1:],
                tuning=["source", "interventional", "oracle"] if first else ["interventional"],
                seeds=[seed],
                estimator_params={"lam_scale": "trace"},
                progress=False,
                interventional_rule=rule,
                selection_folds=folds,
                **({} if n_per_cell is None else {"n_per_cell": n_per_cell}),
            )
            try:
                result = run(interventions=sources)
            except NoInterventionError as error:
                if "domain" not in sources:
                    raise
                sources.remove("domain")
                skipped.append(f"rho {rho}, domain, seed {seed}: {error}")
                result = run(interventions=sources)
            rows += _rows(result.results, "shortcut", rule)
    return rows


def run_domain_shift(seed: int, n_per_cell: int) -> list[dict]:
    world = make_toyworld(n_per_cell, random_state=seed)
    featurizer = _featurizer(seed)
    rows = []
    for source in ("image", "counterfactual"):
        for rule in [DEFAULT, *(r for r in INTERVENTIONAL_RULES if r != DEFAULT)]:
            tuning = ["source", "interventional"] if rule == DEFAULT else ["interventional"]
            result = evaluate_domain_shift(
                featurizer,
                world,
                interventions=[source],
                methods=METHODS,
                tuning=tuning,
                seeds=[seed],
                estimator_params={"lam_scale": "trace"},
                progress=False,
                interventional_rule=rule,
            )
            rows += _rows(result.results, "domain shift", rule)
    return rows


def _interval(values: list[float]) -> str:
    mean, half = mean_confidence_interval(100 * np.asarray(values))
    return f"{mean:.1f} ± {half:.1f}"


RULE_ORDER = ["CLIP probe", "clean", *INTERVENTIONAL_RULES, LABELS["target-oracle"]]


def table(rows: list[dict]) -> str:
    """Mean ± 95% t-interval over seeds of target accuracy and of its paired differences to
    the CLIP probe and to clean selection; domain shift averages the targets of a seed first."""
    lines = [
        "| setting | rho | interventions | rule | accuracy | gain over CLIP probe "
        "| vs clean selection | seeds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    per_seed: dict[tuple, dict[int, float]] = {}
    for r in rows:
        key = (r["setting"], str(r["rho"]), r["interventions"], r["rule"])
        per_seed.setdefault(key, {}).setdefault(r["seed"], []).append(r["accuracy"])
    per_seed = {
        k: {s: float(np.mean(v)) for s, v in seeds.items()} for k, seeds in per_seed.items()
    }

    def paired(means: dict[int, float], base: dict[int, float] | None) -> str:
        if not base:
            return "-"
        return _interval([means[s] - base[s] for s in means if s in base])

    settings = sorted({k[:3] for k in per_seed if k[3] != "CLIP probe"}, key=str)
    for setting, rho, source in settings:
        probe = per_seed.get((setting, rho, "none", "CLIP probe"))
        clean = per_seed.get((setting, rho, source, "clean"))
        for rule in RULE_ORDER:
            key = (setting, rho, "none" if rule == "CLIP probe" else source, rule)
            if key not in per_seed:
                continue
            means = per_seed[key]
            reference = rule in ("CLIP probe", "clean")
            lines.append(
                f"| {setting} | {rho} | {source} | {rule} | {_interval(list(means.values()))} | "
                f"{'-' if rule == 'CLIP probe' else paired(means, probe)} | "
                f"{'-' if reference else paired(means, clean)} | {len(means)} |"
            )
    return "\n".join(lines)


def pivot(rows: list[dict]) -> str:
    """The shortcut rows as one table: a row per (interventions, rule), a column per rho,
    each cell the gain over the CLIP probe of the same seed (mean ± 95% t-interval)."""
    rows = [r for r in rows if r["setting"] == "shortcut"]
    rhos = sorted({float(r["rho"]) for r in rows})
    per_seed: dict[tuple, dict[int, float]] = {}
    for r in rows:
        key = (float(r["rho"]), r["interventions"], r["rule"])
        per_seed.setdefault(key, {})[r["seed"]] = r["accuracy"]
    lines = [
        "| interventions | rule | " + " | ".join(f"rho {rho:g}" for rho in rhos) + " |",
        "|---|---|" + "---|" * len(rhos),
    ]
    probe = [per_seed[(rho, "none", "CLIP probe")] for rho in rhos]
    lines.append(
        "| - | CLIP probe (accuracy) | "
        + " | ".join(_interval(list(p.values())) for p in probe)
        + " |"
    )
    for source in INTERVENTION_SOURCES:
        for rule in RULE_ORDER[1:]:
            cells = []
            for rho, base in zip(rhos, probe, strict=True):
                means = per_seed.get((rho, source, rule))
                cells.append(
                    "n/a" if means is None else _interval([means[s] - base[s] for s in means])
                )
            lines.append(f"| {source} | {rule} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--rho", type=float, nargs="+", default=list(RHOS))
    parser.add_argument(
        "--n-per-cell", type=int, default=None, help="shortcut world (default: the generator's)"
    )
    parser.add_argument(
        "--selection-folds",
        type=int,
        default=5,
        help="shortcut world: stratified folds of the source samples for source selection; "
        "0 leaves one source style out (default: 5)",
    )
    parser.add_argument("--domain-shift-n-per-cell", type=int, default=12)
    parser.add_argument(
        "--settings",
        nargs="+",
        choices=["shortcut", "domain-shift"],
        default=["shortcut", "domain-shift"],
    )
    parser.add_argument("--out", type=Path, default=Path("results/selection_rules"))
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        help="only combine the results.csv of these --out folders (runs split by seed or "
        "setting) into the CSV and table of --out",
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.merge:
        rows = [row for folder in args.merge for row in _read(folder / "results.csv")]
        _write(args.out, rows, sorted({r["seed"] for r in rows}), [])
        return
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    rows: list[dict] = []
    skipped: list[str] = []
    start = time.perf_counter()
    for seed in args.seeds:
        tick = time.perf_counter()
        if "shortcut" in args.settings:
            folds = args.selection_folds or None
            rows += run_shortcut(seed, args.rho, args.n_per_cell, folds, skipped)
        if "domain-shift" in args.settings:
            rows += run_domain_shift(seed, args.domain_shift_n_per_cell)
        print(f"seed {seed}: {time.perf_counter() - tick:.0f} s", flush=True)
    _write(args.out, rows, args.seeds, skipped)
    print(f"\nwall time {time.perf_counter() - start:.0f} s; results in {args.out}")


def _read(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["seed"] = int(row["seed"])
        row["rho"] = row["rho"] if row["rho"] == "-" else float(row["rho"])
        row["accuracy"] = float(row["accuracy"])
    return rows


def _write(out: Path, rows: list[dict], seeds: list[int], skipped: list[str]) -> None:
    write_rows(rows, out / "results.csv")
    text = table(rows)
    if any(r["setting"] == "shortcut" for r in rows):
        text = "Gain over the CLIP probe, shortcut world:\n\n" + pivot(rows) + "\n\n" + text
    if skipped:
        text += "\n\nNot run (no interventional data):\n\n" + "\n".join(f"- {s}" for s in skipped)
    (out / "table.md").write_text(
        f"Target accuracy (%, mean ± 95% t-interval over seeds {seeds}); gains paired by "
        f"seed. Default rule: {DEFAULT}.\n\n{text}\n"
    )
    print(text)


if __name__ == "__main__":
    main()
