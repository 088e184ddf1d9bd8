"""The shortcut protocol: rows, worst-group accuracy by hand, nothing of a target in a fit."""

import dataclasses

import numpy as np
import pytest

from skcicm import CLIPFeaturizer
from skcicm.evaluation.options import METHODS
from skcicm.evaluation.plots import plot_accuracy_vs_rho
from skcicm.evaluation.protocols.shortcut import (
    SOURCE_STYLES_TARGET,
    _run_source,
    _split,
    _worlds,
    check_shortcut_settings,
    embed_shortcut_world,
    shortcut,
)
from skcicm.evaluation.shortcut_tables import shortcut_summary_table, shortcut_table
from skcicm.evaluation.sweep import SweepSettings, fit_method, new_result

GRID = {"lam": [0.0, 1.0], "n_components": [32]}
WORLD = {"n_per_cell": 2, "sources": None, "held_out": "painting"}


@pytest.fixture(scope="module")
def featurizer(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return CLIPFeaturizer(
        "toyclip", None, n_interventions=1, progress=False, num_workers=0, cache_dir=str(cache)
    )


@pytest.fixture(scope="module")
def result(featurizer):
    return shortcut(
        featurizer,
        rho=[0.9],
        # Not the default world: a colour shortcut leaves a held-out style as a second target.
        shortcut_factors=("colors", "background"),
        held_out="painting",
        n_per_cell=2,
        seeds=[0],
        interventions=["image", "text"],
        tuning=["source", "interventional", "oracle"],
        progress=False,
        **GRID,
    )


def _embedded(featurizer, seed=0, rho=0.9, interventions=("image", "text")):
    worlds = _worlds(seed, rho, 2, None, "painting", ("colors", "background"), "reassigned")
    return embed_shortcut_world(
        featurizer, worlds, interventions, held_out="painting", validation_copies=True
    )


def test_rows_cover_methods_sources_targets_and_rules(result):
    targets = {"painting", SOURCE_STYLES_TARGET}
    clip = [r for r in result.results if r["interventions"] == "none"]
    icm = [r for r in result.results if r["interventions"] != "none"]
    assert len(clip) == 2 * 2 and {r["method"] for r in clip} == {
        "clip_zero_shot",
        "clip_linear_probe",
    }
    assert len(icm) == 2 * 2 * 2 * 3
    assert {r["target"] for r in result.results} == targets
    assert {r["tuning"] for r in icm} == {
        "source-lodo",
        "source-lodo-interventional",
        "target-oracle",
    }
    for row in result.results:
        assert row["rho"] == 0.9 and 0 <= row["worst_group"] <= row["accuracy"] <= 1
    # 10 classes x 2 images x (1 held-out style, 5 source styles), 80% in the "in" split.
    assert {r["n_test"] for r in result.results if r["target"] == "painting"} == {16}
    assert {r["n_test"] for r in result.results if r["target"] == SOURCE_STYLES_TARGET} == {80}
    assert len(result.sweep) == 2 * 2 * 2 * len(GRID["lam"])


def test_worst_group_accuracy_by_hand(featurizer, result):
    embedded, groups = _embedded(featurizer)
    data = embedded["none"]
    split = _split(data, ["painting", SOURCE_STYLES_TARGET], 0, 0.2)
    probe = fit_method("clip_linear_probe", data, split["train"])
    for target, (test, _) in split["targets"].items():
        predicted = probe.predict(data.embeddings[test])
        correct = predicted == data.labels[test]
        by_group = {}
        for g, ok in zip(groups[test], correct, strict=True):
            by_group.setdefault(g, []).append(ok)
        worst = min(sum(oks) / len(oks) for oks in by_group.values())
        (row,) = [
            r
            for r in result.results
            if r["method"] == "clip_linear_probe" and r["target"] == target
        ]
        assert row["worst_group"] == pytest.approx(worst)
        assert row["accuracy"] == pytest.approx(correct.mean())


def test_nothing_of_a_target_reaches_a_fit(featurizer):
    embedded, groups = _embedded(featurizer)
    data = embedded["text"]
    targets = ["painting", SOURCE_STYLES_TARGET]
    split = _split(data, targets, 0, 0.2)
    assert not np.isin(data.domains[split["train"]], targets).any()
    # A pair naming the held-out style, with NaN embeddings: any fit that sees it fails.
    first, second = data.intervention_pair_texts
    nan = np.full((1, data.n_features), np.nan, np.float32)
    poisoned = data.replace(
        intervention_pairs=(
            np.vstack([data.intervention_pairs[0], nan]),
            np.vstack([data.intervention_pairs[1], nan]),
        ),
        intervention_pair_texts=(
            [*first, "a photo of a star."],
            [*second, "a painting of a star."],
        ),
    )
    # The validation copies of the targets are NaN already: scoring on them would fail too.
    assert np.isnan(data.validation_views[~np.isin(data.domains, data.domain_names[:5])]).all()
    settings = SweepSettings(["icm_linear_probe"], [0.0, 1.0], [32], ["interventional", "source"])
    result = new_result("shortcut", "test")
    _run_source(poisoned, split, groups, settings, {"seed": 0}, 0.9, "text", result)
    assert len(result.results) == 2 * 2
    assert {r["n_train"] for r in result.results} == {split["train"].size}
    unsafe = dataclasses.replace(settings, tuning=["source"])
    with pytest.raises(ValueError, match="NaN"):
        # Without source_only the poisoned pair would reach the fit.
        from skcicm.evaluation.sweep import run_split

        run_split(
            poisoned, split["train"], lambda e: {}, unsafe, base={}, result=new_result("x", "y")
        )


def test_a_style_shortcut_rounded_to_one_leaves_the_domain_source_nothing():
    # floor(0.95 * 10 + 1/2) = 10: every source image in its class's style.
    common = {"shortcut_factors": ["style"], "target_relation": "reassigned", "held_out": None}
    with pytest.raises(ValueError, match=r"rho \[0.95\] with 10 .* at least 11 images per cell"):
        check_shortcut_settings([0.9, 0.95], **common, n_per_cell=10, interventions=["domain"])
    # 11 per cell leaves one image per cell in another style; other sources need no contrast.
    assert check_shortcut_settings(0.95, **common, n_per_cell=11, interventions=["domain"])
    assert check_shortcut_settings(1.0, **common, n_per_cell=10, interventions=["text"])


def test_plain_clip_runs_without_interventions_and_clip_icm_does_not(featurizer):
    # A control for the probe needs no interventional data; CLIP-ICM is refused before encoding.
    common = {"rho": [0.9], "n_per_cell": 1, "seeds": [0], "progress": False, "interventions": []}
    control = shortcut(featurizer, methods=["clip_linear_probe"], tuning=["source"], **common)
    assert {row["method"] for row in control.results} == {"clip_linear_probe"}
    assert {row["interventions"] for row in control.results} == {"none"}
    with pytest.raises(ValueError, match="interventions is empty"):
        shortcut(featurizer, methods=["icm_linear_probe"], **common)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rho": 1.5}, r"rho must be one or more numbers in \[0, 1\]"),
        ({"target_relation": "swapped"}, "target_relation must be one of"),
        ({"shortcut_factors": ["smell"]}, "shortcut must be"),
        ({"shortcut_factors": ["style"]}, "target_domain=None"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    settings = {
        "rho": 0.9,
        "shortcut_factors": ["colors"],
        "target_relation": "reassigned",
        "held_out": "painting",
    }
    with pytest.raises(ValueError, match=message):
        check_shortcut_settings(**{**settings, **kwargs})


def _rows():
    rows = []
    for seed, rho, clip, icm in [(0, 0.8, 0.6, 0.7), (1, 0.8, 0.8, 0.9), (0, 0.9, 0.5, 0.5)]:
        for method, source, tuning, value in [
            ("clip_linear_probe", "none", "none", clip),
            ("icm_linear_probe", "text", "source-lodo", icm),
        ]:
            rows.append(
                {
                    "method": method,
                    "interventions": source,
                    "tuning": tuning,
                    "target": "painting",
                    "seed": seed,
                    "rho": rho,
                    "accuracy": value,
                    "worst_group": value / 2,
                }
            )
    return rows


def test_shortcut_table_has_average_and_worst_group_columns():
    rows = [r for r in _rows() if r["rho"] == 0.8]
    table = shortcut_table(rows)
    assert "| Method | painting avg | painting worst group |" in table
    assert f"| {METHODS['clip_linear_probe']} | 70.0 ± " in table
    assert "| CLIP-ICM linear probe [text] (source LODO) | 80.0 ± 127.1 | 40.0 ± 63.5 |" in table
    with pytest.raises(ValueError, match="one rho at a time"):
        shortcut_table(_rows())


def _summary_rows(worst_spread):
    """Two seeds; CLIP-ICM on two sources, each chosen on the sources and by the oracle."""
    rows = []
    for seed in (0, 1):
        for method, source, tuning, accuracy, lam in [
            ("clip_zero_shot", "none", "none", 0.5, 0.0),
            ("clip_linear_probe", "none", "none", 0.6, 0.0),
            ("icm_linear_probe", "text", "source-lodo", 0.6, 0.0),
            ("icm_linear_probe", "text", "source-lodo-interventional", 0.8, 1.0 + seed),
            ("icm_linear_probe", "text", "target-oracle", 0.85, 3.0),
            ("icm_linear_probe", "domain", "source-lodo-interventional", 0.7, 0.3),
            ("icm_linear_probe", "domain", "target-oracle", 0.9 + seed / 20, 1.0),
        ]:
            worst = accuracy - 0.2 + (worst_spread * seed if tuning != "none" else 0.0)
            rows.append(
                {"method": method, "interventions": source, "tuning": tuning, "seed": seed,
                 "target": "source styles", "rho": 0.9, "accuracy": accuracy,
                 "worst_group": worst, "lam": lam, "n_components": 32}
            )  # fmt: skip
    return rows


def test_summary_table_keeps_the_source_chosen_rows_and_one_oracle():
    table = shortcut_summary_table(_summary_rows(0.0), scorer="Scorer(rule=x)")
    rows = [line for line in table.splitlines() if line.startswith("| ")][1:]
    assert [row.split(" | ")[0] for row in rows] == [
        f"| {METHODS['clip_zero_shot']}",
        f"| {METHODS['clip_linear_probe']}",
        f"| {METHODS['icm_linear_probe']} [text], chosen on the sources",
        f"| {METHODS['icm_linear_probe']} [domain], chosen on the sources",
        f"| {METHODS['icm_linear_probe']}, target oracle over every source (upper bound)",
    ]
    # The oracle row is the best oracle over the sources per seed: domain (90.0 and 95.0).
    assert "| 92.5 ± 31.8 |" in rows[-1] and "(1, 32) [domain] x2" in rows[-1]
    # Chosen (lam, K) per seed, and the rule named from the scorer, not hard-coded.
    assert rows[2].endswith("| (1, 32), (2, 32) |") and "Scorer(rule=x)" in table
    assert "| 80.0 ± 0.0 | 60.0 ± 0.0 |" in rows[2]


def test_summary_table_hides_worst_group_cells_with_wide_intervals():
    # The CLIP-ICM rows' worst group differs by 10 points between two seeds: a half-width of
    # 12.706 * 5 = 63.5 points, far over 10, so those cells print as "–".
    table = shortcut_summary_table(_summary_rows(0.1), scorer="S()")
    rows = [line for line in table.splitlines() if line.startswith("| ")][1:]
    assert "| 60.0 ± 0.0 | 40.0 ± 0.0 |" in rows[1]
    assert all(row.split(" | ")[2] == "–" for row in rows[2:])
    with pytest.raises(ValueError, match="one rho at a time"):
        shortcut_summary_table([*_summary_rows(0.0), {**_summary_rows(0.0)[0], "rho": 0.5}],
                               scorer="S()")  # fmt: skip


def test_accuracy_vs_rho_plot_is_written(tmp_path):
    path = plot_accuracy_vs_rho(_rows(), tmp_path / "rho.png")
    assert path.stat().st_size > 1000
