"""Evaluation protocols, model selection, results files, tables and plots."""

import math
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from _protocol_fixtures import write_image_folder
from matplotlib.figure import Figure
from scipy import stats
from sklearn.linear_model import LogisticRegression

from skcicm import CLIPFeaturizer, InvariantCausalMechanism
from skcicm.datasets.domainbed import domainbed_holdout_mask, load_domainbed
from skcicm.evaluation import (
    EmbeddedDataset,
    base_classes,
    domain_shift,
    evaluate_domain_shift,
    evaluate_open_class,
    markdown_table,
    mean_confidence_interval,
    open_class,
    plot_protocol,
    read_rows,
    write_rows,
)
from skcicm.featurizer.cache import clear_memory_cache
from skcicm.model_selection import check_grid, lodo_grid_search

DOMAINS = ["a", "b", "c"]


def _synthetic(n_per_cell=15, d=12, seed=0):
    """Embeddings whose class is in a few directions and whose domain shifts others."""
    rng = np.random.default_rng(seed)
    n_classes = 4
    labels = np.tile(np.repeat(np.arange(n_classes), n_per_cell), len(DOMAINS))
    domains = np.repeat(DOMAINS, n_classes * n_per_cell)
    class_means = rng.normal(size=(n_classes, d))
    shifts = {domain: 1.5 * rng.normal(size=d) for domain in DOMAINS}
    Z = class_means[labels] + np.stack([shifts[x] for x in domains])
    Z += 0.7 * rng.normal(size=Z.shape)
    views = Z[:, None, :] + rng.normal(size=(Z.shape[0], 2, 1)) * shifts["a"]
    return EmbeddedDataset(
        embeddings=Z,
        interventions=views,
        labels=labels,
        domains=domains,
        class_names=["zebra", "ant", "cat", "bee"],
        domain_names=DOMAINS,
        class_embeddings=class_means + 0.3 * rng.normal(size=class_means.shape),
        name="synthetic",
    )


@pytest.fixture(scope="module")
def embedded():
    return _synthetic()


def _split(embedded, target, seed=0):
    holdout = domainbed_holdout_mask(embedded.domains, embedded.domain_names, trial_seed=seed)
    is_target = embedded.domains == target
    return ~is_target & ~holdout, is_target & ~holdout, is_target & holdout


def _rows(result, **where):
    return [r for r in result if all(r[k] == v for k, v in where.items())]


def test_domain_shift_matches_hand_computation(embedded):
    result = domain_shift(embedded, lam=1.0, n_components=4, seeds=[0, 3], progress=False)
    assert len(result.results) == 2 * 3 * 4 and not result.cv_results
    Z, y = embedded.embeddings, embedded.labels
    for seed in (0, 3):
        train, test, _ = _split(embedded, "b", seed)
        rows = {r["method"]: r for r in _rows(result.results, seed=seed, target="b")}
        assert rows["icm_zero_shot"]["n_test"] == test.sum() == 60 - int(60 * 0.2)
        assert rows["icm_zero_shot"]["n_train"] == train.sum() == 2 * (60 - 12)
        unit = Z / np.linalg.norm(Z, axis=1, keepdims=True)
        text = embedded.class_embeddings
        text = text / np.linalg.norm(text, axis=1, keepdims=True)
        zero_shot = np.mean((unit[test] @ text.T).argmax(axis=1) == y[test])
        assert rows["clip_zero_shot"]["accuracy"] == pytest.approx(zero_shot)
        probe = LogisticRegression(C=0.316, max_iter=1000).fit(Z[train], y[train])
        assert rows["clip_linear_probe"]["accuracy"] == pytest.approx(
            probe.score(Z[test], y[test]), abs=1.5 / test.sum()
        )
        icm = InvariantCausalMechanism(n_components=4, lam=1.0).fit(
            Z[train], y[train], interventions=embedded.interventions[train]
        )
        assert rows["icm_linear_probe"]["accuracy"] == icm.score(Z[test], y[test])
        assert rows["icm_linear_probe"]["tuning"] == "given"
        assert (rows["clip_zero_shot"]["lam"], rows["clip_zero_shot"]["n_components"]) == (0.0, 12)


def test_source_tuning_uses_source_domains_only(embedded):
    grid = {"lam": [0.1, 10.0], "n_components": [2, 6]}
    result = domain_shift(
        embedded, targets=["c"], methods=["icm_linear_probe"], seeds=[0], progress=False, **grid
    )
    (row,) = result.results
    train, _, _ = _split(embedded, "c")
    search = lodo_grid_search(
        embedded.embeddings[train],
        embedded.labels[train],
        embedded.domains[train],
        interventions=embedded.interventions[train],
        **grid,
    )
    assert row["tuning"] == "source-lodo"
    assert (row["lam"], row["n_components"]) == (
        search.best_params["lam"],
        search.best_params["n_components"],
    )
    assert row["selection_score"] == pytest.approx(search.best_score)
    assert {r["held_out_domain"] for r in result.cv_results} == {"a", "b"}
    assert len(result.cv_results) == 4 * 2 and len(result.sweep) == 4
    chosen = _rows(result.sweep, lam=row["lam"], n_components=row["n_components"])
    assert chosen[0]["accuracy"] == row["accuracy"]


def test_oracle_tuning_selects_on_target_holdout(embedded):
    result = domain_shift(
        embedded,
        methods=["icm_zero_shot"],
        lam=[0.0, 1.0, 30.0],
        n_components=[2, 8],
        tuning="oracle",
        progress=False,
    )
    for row in result.results:
        sweep = _rows(result.sweep, target=row["target"])
        assert row["tuning"] == "target-oracle"
        assert row["selection_score"] == max(r["validation"] for r in sweep)
    assert "CLIP-ICM zero-shot (oracle)" in markdown_table(result.results)


def test_open_class_scores_base_and_novel_classes(embedded):
    assert base_classes(embedded.class_names).tolist() == [1, 3]  # ant, bee
    result = open_class(embedded, lam=1.0, n_components=4, targets=["a"], progress=False)
    rows = {r["method"]: r for r in result.results}
    assert set(rows) == {"clip_zero_shot", "icm_zero_shot"}
    train, test, _ = _split(embedded, "a")
    is_base = np.isin(embedded.labels, [1, 3])
    assert rows["icm_zero_shot"]["n_train"] == (train & is_base).sum()
    Z, y = embedded.embeddings, embedded.labels
    text = embedded.class_embeddings
    cosine = (Z / np.linalg.norm(Z, axis=1, keepdims=True)) @ (
        text / np.linalg.norm(text, axis=1, keepdims=True)
    ).T
    base = np.mean(cosine[test & is_base].argmax(1) == y[test & is_base])
    novel = np.mean(cosine[test & ~is_base].argmax(1) == y[test & ~is_base])
    row = rows["clip_zero_shot"]
    assert (row["base_accuracy"], row["novel_accuracy"]) == pytest.approx((base, novel))
    assert row["accuracy"] == pytest.approx(2 * base * novel / (base + novel))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"targets": ["z"]}, "targets: unknown domains"),
        ({"methods": ["clip_knn"]}, "Unknown methods"),
        ({"tuning": "target"}, "Unknown tuning"),
        ({"n_components": [4, 13]}, r"integers in 1\.\.12"),
        ({"lam": [-1.0]}, "finite numbers >= 0"),
        ({"seeds": []}, "seeds is empty"),
    ],
)
def test_domain_shift_rejects_bad_arguments(embedded, kwargs, match):
    with pytest.raises(ValueError, match=match):
        domain_shift(embedded, progress=False, **kwargs)


def test_open_class_rejects_probe_methods(embedded):
    with pytest.raises(ValueError, match="clip_linear_probe"):
        open_class(embedded, methods=["clip_linear_probe"], progress=False)


def test_check_grid_and_lodo_need_two_domains():
    assert check_grid(0.5, None, n_features=8) == ([0.5], [8])
    with pytest.raises(ValueError, match="True"):
        check_grid([1.0], [True], n_features=8)
    with pytest.raises(ValueError, match="at least one value"):
        check_grid([], [2], n_features=8)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="at least two source domains"):
        lodo_grid_search(
            rng.normal(size=(20, 4)),
            np.arange(20) % 2,
            np.full(20, "a"),
            lam=[1.0],
            n_components=[2],
        )


def test_mean_confidence_interval_is_a_t_interval():
    values = [0.5, 0.6, 0.8, 0.7]
    mean, half = mean_confidence_interval(values)
    expected = stats.t.ppf(0.975, 3) * np.std(values, ddof=1) / 2
    assert (mean, half) == pytest.approx((0.65, expected))
    assert math.isnan(mean_confidence_interval([0.4])[1])


def test_markdown_table_reports_mean_ci_and_average():
    rows = [
        {"method": "icm_zero_shot", "tuning": "source-lodo", "target": t, "seed": s, "accuracy": a}
        for s, accs in enumerate([(0.5, 0.7), (0.6, 0.9), (0.7, 0.8)])
        for t, a in zip(("art", "photo"), accs, strict=True)
    ]
    table = markdown_table(rows).splitlines()
    assert table[0] == "| Method | art | photo | Avg |"
    _, half = mean_confidence_interval([0.6, 0.75, 0.75])
    assert (
        table[2] == f"| CLIP-ICM zero-shot | 60.0 ± 24.8 | 80.0 ± 24.8 | 70.0 ± {100 * half:.1f} |"
    )
    assert table[-1] == "Mean ± 95% t-interval over 3 seeds."
    with pytest.raises(ValueError, match="No results"):
        markdown_table([])


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_results_file_round_trip(tmp_path, suffix):
    rows = [
        {
            "dataset": "d",
            "target": "x",
            "method": "icm_zero_shot",
            "seed": 0,
            "accuracy": 0.25,
            "lam": 1.0,
            "n_components": 4,
            "extra": "v",
            "selection_score": float("nan"),
        },
        {
            "dataset": "d",
            "target": "inf",
            "method": "clip_zero_shot",
            "seed": 1,
            "accuracy": 1.0,
            "lam": 0.0,
            "n_components": 12,
            "extra": "w",
            "selection_score": 0.5,
        },
    ]
    path = write_rows(rows, tmp_path / f"results.{suffix}")
    back = read_rows(path)
    assert [r["target"] for r in back] == ["x", "inf"]  # names stay strings
    assert back[0]["n_components"] == 4 and back[1]["accuracy"] == 1.0
    assert math.isnan(back[0]["selection_score"]) and back[1]["selection_score"] == 0.5
    header = path.read_text().splitlines()[0]
    assert suffix == "jsonl" or header.startswith("dataset,target,method,seed,accuracy")


def test_plots_are_written(tmp_path, embedded, monkeypatch):
    drawn = {}
    save = Figure.savefig

    def keep(figure, path, **kwargs):
        drawn[Path(path).name] = figure
        return save(figure, path, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    result = domain_shift(
        embedded, seeds=[0, 1], lam=[0.0, 1.0, 10.0], n_components=[2, 4], progress=False
    )
    paths = plot_protocol(result.sweep, result.results, tmp_path / "plots", title="synthetic")
    names = sorted(p.name for p in paths)
    assert names == [
        "accuracy_vs_lam.png",
        "accuracy_vs_n_components.png",
        "heatmap_a.png",
        "heatmap_b.png",
        "heatmap_c.png",
    ]
    for path in paths:
        pixels = matplotlib.image.imread(path)[..., :3]
        assert pixels.shape[0] >= 300 and pixels.shape[1] >= 800, path.name
        assert (pixels < 0.9).any(axis=-1).mean() > 0.05, f"{path.name} is nearly blank"

    lam = drawn["accuracy_vs_lam.png"]
    panels = [axis for axis in lam.axes if axis.get_title()]
    assert [axis.get_title() for axis in panels] == DOMAINS
    assert len({axis.get_ylim() for axis in panels}) == 1  # one y range for all targets
    assert [t.get_text() for t in panels[0].get_xticklabels()] == ["0", "1", "10"]
    assert not any(axis.get_legend() for axis in lam.axes) and len(lam.legends) == 1
    legend = [t.get_text() for t in lam.legends[0].get_texts()]
    assert "CLIP-ICM linear probe" in legend and any("selected by" in t for t in legend)
    assert "95% t-interval" in lam.legends[0].get_title().get_text()
    # One error bar per lam value and method, over the two seeds.
    bars = [c for c in panels[0].containers if c.has_yerr]
    assert len(bars) == 2 and all(len(c.lines[2][0].get_segments()) == 3 for c in bars)

    heatmap = drawn["heatmap_b.png"]
    assert heatmap._suptitle.get_text() == "synthetic: target b"
    images = [axis.images[0] for axis in heatmap.axes if axis.images]
    assert len(images) == 2 and len({image.get_clim() for image in images}) == 1
    boxes = [p for axis in heatmap.axes for p in axis.patches if p.get_edgecolor()[:3] == (1, 0, 0)]
    assert len(boxes) == 2 and len(heatmap.legends) == 1
    assert "selected by" in heatmap.legends[0].get_texts()[0].get_text()


@pytest.fixture(scope="module")
def tiny_pacs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pacs")
    write_image_folder(root / "PACS", domains=["art_painting", "photo", "sketch"], n_per_cell=4)
    return load_domainbed("PACS", root, domains=["art_painting", "photo", "sketch"])


def test_protocols_through_the_api_encode_each_image_once(
    tmp_path, tiny_pacs, tiny_clip_name, monkeypatch
):
    def featurizer():
        return CLIPFeaturizer(
            tiny_clip_name, None, cache_dir=str(tmp_path / "cache"), progress=False, num_workers=0
        )

    grid = {"lam": [0.1, 1.0], "n_components": [4, 8], "seeds": [0], "progress": False}
    shift = evaluate_domain_shift(featurizer(), tiny_pacs, **grid)
    assert len(shift.results) == 3 * 4
    assert {r["model"] for r in shift.results} == {tiny_clip_name}
    assert all(r["interventions"] == "image" for r in shift.results)
    assert "| Method | art_painting | photo | sketch | Avg |" in markdown_table(shift.results)

    # A second protocol, in a "new process" (memory cache cleared): the disk cache serves all.
    clear_memory_cache()

    def no_encoding(*args, **kwargs):
        raise AssertionError("an image was encoded again")

    monkeypatch.setattr(CLIPFeaturizer, "_encode_batch", no_encoding)
    wild = evaluate_open_class(featurizer(), tiny_pacs, tuning="oracle", **grid)
    assert {r["method"] for r in wild.results} == {"clip_zero_shot", "icm_zero_shot"}
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in wild.results)
    assert all(r["n_test"] == 16 - int(16 * 0.2) for r in wild.results)


def test_text_interventions_need_prompt_pairs(tiny_pacs, tiny_clip_name):
    featurizer = CLIPFeaturizer(tiny_clip_name, None, progress=False, num_workers=0)
    with pytest.raises(ValueError, match="text_interventions"):
        evaluate_domain_shift(featurizer, tiny_pacs, interventions=["text"], progress=False)
    with pytest.raises(ValueError, match="Unknown interventions"):
        evaluate_domain_shift(featurizer, tiny_pacs, interventions=["audio"], progress=False)


def test_text_pairs_naming_the_target_never_reach_its_fit():
    embedded = _synthetic()
    rng = np.random.default_rng(4)
    # Domains are named "a", "b", "c": the prompts avoid the article "a".
    texts = (["photo of bee", "c of bee", "photo of cat"], ["b of bee"] * 3)
    first, second = rng.normal(size=(3, 12)), rng.normal(size=(3, 12))
    # The pair naming domain "c" is poisoned: fitting on it would raise on the NaN.
    first[1] = np.nan
    embedded.intervention_pairs, embedded.intervention_pair_texts = (first, second), texts
    grid = {"lam": [0.5, 1.0], "n_components": [4, 8], "progress": False}
    result = domain_shift(embedded, targets=["c"], methods=["icm_zero_shot"], **grid)
    assert len(result.results) == 1
    with pytest.raises(ValueError, match="contains NaN"):
        domain_shift(embedded, targets=["a"], methods=["icm_zero_shot"], **grid)
    # A target named in every pair leaves no text interventions at all.
    only_b = domain_shift(embedded, targets=["b"], methods=["icm_zero_shot"], **grid)
    assert len(only_b.results) == 1


def test_embedded_dataset_rejects_bad_shapes():
    embedded = _synthetic()
    with pytest.raises(ValueError, match=r"interventions must have shape \(n_samples=180"):
        embedded.replace(interventions=embedded.interventions[:10])
    with pytest.raises(ValueError, match="labels has 3 entries for 180"):
        embedded.replace(labels=[0, 1, 2])
    with pytest.raises(ValueError, match="intervention_styles"):
        embedded.replace(intervention_styles=np.full((180, 5), "a"))


def _with_counterfactual_styles(embedded):
    """Views named by style: every sample has a copy in each other domain's style."""
    rng = np.random.default_rng(1)
    n, d = embedded.embeddings.shape
    names = np.asarray(embedded.domain_names)
    styles = np.array([names[names != own] for own in embedded.domains], dtype=object)
    views = embedded.embeddings[:, None] + rng.normal(size=(n, len(names) - 1, d))
    return embedded.replace(interventions=views, intervention_styles=styles)


def test_source_only_drops_the_target_style_and_masks_target_rows():
    embedded = _with_counterfactual_styles(_synthetic())
    view = embedded.source_only("c")
    is_target = embedded.domains == "c"
    assert view.interventions.shape == (180, 1, 12)
    assert np.isnan(view.interventions[is_target]).all()
    assert np.isfinite(view.interventions[~is_target]).all()
    assert set(view.intervention_styles[embedded.domains == "a"].ravel()) == {"b"}
    assert set(view.intervention_styles[embedded.domains == "b"].ravel()) == {"a"}
    # The "a" sample's copy in style "b" is kept as it was.
    i = int(np.flatnonzero(embedded.domains == "a")[0])
    np.testing.assert_array_equal(view.interventions[i, 0], embedded.interventions[i, 0])
    assert embedded.source_only(None) is embedded


def test_nothing_of_the_target_reaches_a_fit():
    embedded = _with_counterfactual_styles(_synthetic())
    poisoned = embedded.interventions.copy()
    # The target's own copies and every copy rendered in its style: any use fails on NaN.
    poisoned[embedded.domains == "c"] = np.nan
    poisoned[embedded.intervention_styles == "c"] = np.nan
    embedded = embedded.replace(interventions=poisoned)
    grid = {"lam": [0.5, 1.0], "n_components": [4, 8], "progress": False}
    result = domain_shift(embedded, targets=["c"], tuning=["source", "oracle"], **grid)
    assert len(result.results) == 2 + 2 * 2
    with pytest.raises(ValueError, match="NaN"):
        domain_shift(embedded, targets=["a"], methods=["icm_zero_shot"], **grid)


def test_several_tuning_rules_share_one_sweep(embedded):
    grid = {"lam": [0.0, 1.0], "n_components": [2, 12], "seeds": [0], "progress": False}
    both = domain_shift(
        embedded, methods=["icm_linear_probe"], tuning=("source", "oracle"), targets=["a"], **grid
    )
    source = domain_shift(embedded, methods=["icm_linear_probe"], targets=["a"], **grid)
    oracle = domain_shift(
        embedded, methods=["icm_linear_probe"], targets=["a"], tuning="oracle", **grid
    )
    assert [r["tuning"] for r in both.results] == ["source-lodo", "target-oracle"]
    assert both.results == source.results + oracle.results
    assert both.sweep == source.sweep


def test_plain_clip_candidate_wins_ties_under_source_selection(embedded):
    # With lam = 0 and K = d the grid point is plain CLIP itself: a tie that goes to CLIP.
    result = domain_shift(
        embedded,
        methods=["clip_zero_shot", "icm_zero_shot"],
        lam=[0.0, 1.0],
        n_components=[12],
        targets=["b"],
        tuning=["source", "oracle"],
        baseline_candidate=True,
        progress=False,
    )
    clip, source, oracle = result.results
    assert source["plain_clip"] and source["tuning"] == "source-lodo"
    assert (source["lam"], source["n_components"]) == (0.0, 12)
    assert source["accuracy"] == clip["accuracy"]
    # The oracle keeps the first best grid point on ties.
    assert not oracle["plain_clip"] or oracle["validation"] > max(
        r["validation"] for r in result.sweep
    )
    assert all(not r.get("plain_clip", False) for r in result.sweep)


def test_counterfactual_interventions_are_the_rendered_twins(tiny_clip_name):
    from skcicm.datasets import load_toyworld_dataset, render_counterfactuals
    from skcicm.evaluation import embed_dataset

    world = load_toyworld_dataset(2, domains=["photo", "sketch", "neon"], random_state=3)
    featurizer = CLIPFeaturizer(tiny_clip_name, None, progress=False, num_workers=0)
    embedded = embed_dataset(featurizer, world, interventions=["counterfactual"])
    n = len(world.images)
    assert embedded.interventions.shape == (n, 2, embedded.n_features)
    i = int(np.flatnonzero(embedded.domains == "sketch")[0])
    assert embedded.intervention_styles[i].tolist() == ["photo", "neon"]
    for column, style in enumerate(["photo", "neon"]):
        twin = render_counterfactuals(world, change="style", domain=style, indices=[i])
        np.testing.assert_allclose(
            embedded.interventions[i, column], featurizer.transform(twin)[0], rtol=1e-5
        )
    view = embedded.source_only("neon")
    assert view.intervention_styles[i].tolist() == ["photo"]


def test_counterfactuals_need_a_world_that_can_render_them(tiny_pacs, tiny_clip_name):
    from skcicm.evaluation import embed_dataset

    featurizer = CLIPFeaturizer(tiny_clip_name, None, progress=False, num_workers=0)
    with pytest.raises(ValueError, match="cannot render counterfactuals"):
        embed_dataset(featurizer, tiny_pacs, interventions=["counterfactual"])
    with pytest.raises(ValueError, match="exclusive"):
        embed_dataset(featurizer, tiny_pacs, interventions=["image", "counterfactual"])


@pytest.mark.parametrize("package", ["skcicm.evaluation", "skcicm.model_selection"])
def test_evaluation_and_model_selection_do_not_import_torch(package):
    import subprocess
    import sys

    # Every module of the package, not only its (lazy) __init__.
    code = (
        "import importlib, pkgutil, sys\n"
        f"import {package} as package\n"
        "for info in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):\n"
        "    if info.name.rsplit('.', 1)[-1] != 'plots':\n"
        "        importlib.import_module(info.name)\n"
        "print(sorted(m for m in ('torch', 'torchvision', 'open_clip', 'matplotlib')"
        " if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
