"""Structural checks of benchmarks/toyworld_icm.py on a tiny ToyWorld sample and ToyCLIP."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "toyworld_icm.py"
DOMAINS = ("photo", "sketch", "cartoon", "painting")
TARGETS = ("painting", "photo")


@pytest.fixture(scope="module")
def benchmark():
    spec = importlib.util.spec_from_file_location("toyworld_icm", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    # dataclasses resolves the module of the classes it decorates through sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.fixture(scope="module")
def result(benchmark):
    # Three source domains per target: leave-one-domain-out folds keep domain contrasts.
    return benchmark.run_benchmark(
        seeds=[0],
        n_per_cell=4,
        domains=DOMAINS,
        targets=TARGETS,
        variants=benchmark.quick_variants(),
        progress=False,
    )


def _key(row):
    return (row["seed"], row["target"], row["source"], row["variant"], row["method"])


def test_rows_are_tidy(benchmark, result):
    keys = [(*_key(r), r["tuning"]) for r in result.results]
    assert len(keys) == len(set(keys))
    clip = [r for r in result.results if r["source"] == "none"]
    assert {(r["target"], r["method"]) for r in clip} == {
        (t, m) for t in TARGETS for m in ("clip_zero_shot", "clip_linear_probe")
    }
    icm = [r for r in result.results if r["source"] != "none"]
    assert {r["tuning"] for r in icm} == {benchmark.SOURCE_TUNING, benchmark.ORACLE_TUNING}
    assert {r["source"] for r in icm} == set(benchmark.SOURCES)
    for row in result.results:
        assert 0.0 <= row["accuracy"] <= 1.0
        assert row["kind"] in ("clip", "pca", "icm")
        assert -1e-9 <= row["variant_removed"] <= 1 + 1e-9
        assert -1e-9 <= row["class_kept"] <= 1 + 1e-9


def test_no_icm_grid_point_equals_plain_clip_exactly(result):
    """lam=0 and K=d is a rotation of CLIP's space: same predictions as CLIP, both heads."""
    clip = {
        (r["seed"], r["target"], r["method"].removeprefix("clip_")): r["accuracy"]
        for r in result.results
        if r["source"] == "none"
    }
    rotations = [r for r in result.sweep if r["kind"] == "clip"]
    assert {r["method"] for r in rotations} == {"icm_zero_shot", "icm_linear_probe"}
    assert any(r["lam"] == 0 for r in rotations)
    for row in rotations:
        assert row["accuracy"] == clip[(row["seed"], row["target"], row["method"][4:])]
    for row in result.results:
        if row["kind"] == "clip":
            assert row["gain"] == 0.0


def test_grids_hold_no_icm_and_choices_come_from_them(benchmark, result):
    d = next(r["n_components"] for r in result.results if r["source"] == "none")
    for variant in benchmark.quick_variants():
        points = {
            (r["lam"], r["n_components"]) for r in result.sweep if r["variant"] == variant.name
        }
        assert points == {(lam, k) for lam in variant.lams for k in variant.ks(d)}
        if variant.objective == "difference":
            assert (0.0, d) in points
        for row in result.results:
            if row["variant"] == variant.name:
                assert (row["lam"], row["n_components"]) in points | {(0.0, d)}


def test_oracle_is_at_least_source_choice_on_its_selection_split(benchmark, result):
    by_key = {}
    for row in result.results:
        by_key.setdefault(_key(row), {})[row["tuning"]] = row
    pairs = [rows for rows in by_key.values() if benchmark.ORACLE_TUNING in rows]
    assert pairs
    for rows in pairs:
        oracle, source = rows[benchmark.ORACLE_TUNING], rows[benchmark.SOURCE_TUNING]
        assert oracle["target_validation"] >= source["target_validation"]
        assert oracle["selection_score"] == oracle["target_validation"]


def test_no_target_information_in_the_interventions(result):
    for (target, source), view in result.views.items():
        is_target = view.domains == target
        if source in ("augment", "counterfactual"):
            assert np.isnan(view.interventions[is_target]).all()
            assert np.isfinite(view.interventions[~is_target]).all()
        if source == "counterfactual":
            styles = view.intervention_styles[~is_target]
            assert styles.shape[1] == len(DOMAINS) - 2
            assert target not in set(styles.ravel())
            assert (styles != view.domains[~is_target][:, None]).all()
        if source == "text":
            prompts = [p for side in view.intervention_pair_texts for p in side]
            assert prompts and not any(target in p for p in prompts)
            used = {style for style in DOMAINS if any(f" {style} " in p for p in prompts)}
            assert used == set(DOMAINS) - {target}
        if source == "domain":
            assert view.domain_interventions and view.interventions is None


def test_report_labels_the_oracle(benchmark, result):
    meta = {
        "command": "test",
        "n_per_cell": 4,
        "machine": "test",
        "weights": benchmark.weights_state(),
    }
    report = benchmark.render_report(result, meta)
    assert f"**Accuracy, {benchmark.ORACLE_TUNING}**" in report
    assert "| CLIP zero-shot |" in report and "| ICM linear probe, text |" in report


def test_help(benchmark, capsys):
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main(["--help"])
    assert exit_info.value.code == 0
    assert "--quick" in capsys.readouterr().out
