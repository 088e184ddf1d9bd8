"""Every protocol entry point refuses bad options before it encodes a single image."""

import numpy as np
import pytest
from sklearn.utils import Bunch

from skcicm import CLIPFeaturizer
from skcicm.evaluation import (
    evaluate_domain_shift,
    evaluate_imagenet_variants,
    evaluate_open_class,
    shortcut,
)
from skcicm.evaluation.preflight import embedding_dim, unencoded

DIM = 12


class EncodingStarted(Exception):
    """Raised by the featurizer below: a check let the run reach the encoding."""


def _encode(*args, **kwargs):
    raise EncodingStarted


class NoEncodingFeaturizer:
    """A fitted featurizer of dimension ``DIM`` that fails on any encoding, text included."""

    embedding_dim_ = DIM
    interventions = "paper"
    text_interventions = None
    transform = intervention_embeddings = class_embeddings = encode_text = staticmethod(_encode)


def _domains_data(n_per_cell=5):
    """Three domains of four classes; images that are never looked at."""
    domains = ["art", "photo", "sketch"]
    labels = np.tile(np.repeat(np.arange(4), n_per_cell), len(domains))
    return Bunch(
        images=[None] * labels.size,
        labels=labels,
        domains=np.repeat(domains, 4 * n_per_cell),
        class_names=["cat", "dog", "owl", "hot dog"],
        domain_names=domains,
        name="tiny",
    )


def _imagenet(featurizer, **options):
    source = Bunch(
        images=[None] * 2000,
        labels=np.repeat(np.arange(1000), 2),
        domains=np.full(2000, "imagenet"),
        class_names=[f"class {i}" for i in range(1000)],
        domain_names=["imagenet"],
        name="imagenet",
    )
    variant = Bunch(
        images=[None] * 200,
        labels=np.arange(200),
        domains=np.full(200, "imagenet-r"),
        class_names=[f"class {i}" for i in range(200)],
        domain_names=["imagenet-r"],
        imagenet_indices=np.arange(0, 1000, 5),
    )
    return evaluate_imagenet_variants(featurizer, source, {"imagenet-r": variant}, **options)


ENTRY_POINTS = {
    "domain_shift": lambda f, **options: evaluate_domain_shift(f, _domains_data(), **options),
    "open_class": lambda f, **options: evaluate_open_class(f, _domains_data(), **options),
    "imagenet": _imagenet,
    # rho 0.5 of 2 per cell: one image per cell in another style, which the domain source needs.
    "shortcut": lambda f, **options: shortcut(f, n_per_cell=2, rho=0.5, **options),
}
DOMAIN_SHIFT = ("domain_shift", "open_class")

BAD_OPTIONS = [
    ({"lam": [0.1, -1.0]}, "lam values must be finite numbers >= 0"),
    ({"n_components": [4, DIM + 1]}, rf"n_components values must be integers in 1\.\.{DIM}"),
    ({"tuning": ["source", "target"]}, r"Unknown tuning \['target'\]"),
    ({"methods": ["clip_knn"]}, r"Unknown methods \['clip_knn'\]"),
    ({"seeds": []}, "seeds is empty"),
    ({"seeds": [0, 0]}, "seeds lists 0 more than once"),
    ({"methods": ["icm_zero_shot", "icm_zero_shot"]}, "methods lists 'icm_zero_shot' more"),
    ({"tuning": []}, "tuning is empty"),
    ({"lam": [0.1, 1e308]}, r"lam values must be at most 1e\+100"),
    ({"holdout_fraction": 1.0}, r"holdout_fraction: must be between 0 and 1"),
]


@pytest.mark.parametrize("entry_point", sorted(ENTRY_POINTS))
def test_valid_options_pass_the_checks_and_reach_the_encoding(entry_point):
    # The other tests rely on this: with good options, the run gets as far as encoding.
    with pytest.raises(EncodingStarted):
        ENTRY_POINTS[entry_point](NoEncodingFeaturizer(), seeds=[0], progress=False)


@pytest.mark.parametrize("entry_point", sorted(ENTRY_POINTS))
@pytest.mark.parametrize(("options", "message"), BAD_OPTIONS)
def test_bad_options_fail_before_encoding(entry_point, options, message):
    with pytest.raises(ValueError, match=message):
        ENTRY_POINTS[entry_point](NoEncodingFeaturizer(), **{"progress": False, **options})


@pytest.mark.parametrize("entry_point", sorted(ENTRY_POINTS))
def test_an_unknown_keyword_fails_before_encoding(entry_point):
    with pytest.raises(TypeError, match="taregts"):
        ENTRY_POINTS[entry_point](NoEncodingFeaturizer(), taregts=["photo"])


@pytest.mark.parametrize("entry_point", DOMAIN_SHIFT)
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"targets": ["photo", "nosuch"]}, r"targets: unknown domains \['nosuch'\]; tiny has"),
        ({"targets": ["photo", "photo"]}, "targets lists 'photo' more than once"),
        ({"targets": []}, "targets is empty"),
        ({"n_jobs": 0}, "n_jobs must be None or a nonzero integer"),
        # 20 images a domain: 19 held out leave one class in the 'in' split.
        ({"holdout_fraction": 0.95}, r"holdout_fraction: 0.95 leaves domain 'art'"),
    ],
)
def test_targets_and_splits_fail_before_encoding(entry_point, options, message):
    with pytest.raises(ValueError, match=message):
        ENTRY_POINTS[entry_point](NoEncodingFeaturizer(), progress=False, **options)


def test_open_class_refuses_probes_and_imagenet_interventional_tuning_before_encoding():
    featurizer = NoEncodingFeaturizer()
    with pytest.raises(ValueError, match=r"Unknown methods \['clip_linear_probe'\]"):
        ENTRY_POINTS["open_class"](featurizer, methods=["clip_linear_probe"])
    with pytest.raises(ValueError, match="tuning: 'interventional' needs several source"):
        _imagenet(featurizer, tuning=["interventional"])


@pytest.mark.parametrize("entry_point", DOMAIN_SHIFT)
def test_interventional_tuning_needs_intervened_copies_before_encoding(entry_point):
    run = ENTRY_POINTS[entry_point]
    with pytest.raises(ValueError, match="tuning: 'interventional' scores candidates on"):
        run(NoEncodingFeaturizer(), interventions=["domain"], tuning=["interventional"])
    with pytest.raises(EncodingStarted):
        run(NoEncodingFeaturizer(), interventions=["image"], tuning=["interventional"])


@pytest.mark.parametrize(
    ("entry_point", "interventions", "message"),
    [
        ("domain_shift", ["counterfactual"], "'tiny' cannot render counterfactuals"),
        ("open_class", ["image", "audio"], r"Unknown interventions \['audio'\]"),
        ("imagenet", ["domain"], "'domain' interventions do not apply"),
    ],
)
def test_intervention_sources_that_cannot_apply_fail_before_encoding(
    entry_point, interventions, message
):
    with pytest.raises(ValueError, match=message):
        ENTRY_POINTS[entry_point](NoEncodingFeaturizer(), interventions=interventions)


def test_an_unfitted_clip_featurizer_gives_its_dimension_from_one_text(monkeypatch):
    fitted = CLIPFeaturizer("toyclip", None, progress=False, num_workers=0).fit(None)
    featurizer = CLIPFeaturizer("toyclip", None, progress=False, num_workers=0)
    monkeypatch.setattr(CLIPFeaturizer, "transform", _encode)
    monkeypatch.setattr(CLIPFeaturizer, "intervention_embeddings", _encode)
    assert embedding_dim(featurizer) == fitted.embedding_dim_
    assert not hasattr(featurizer, "embedding_dim_")  # the caller's featurizer is not fitted
    bound = rf"integers in 1\.\.{fitted.embedding_dim_}\b"
    with pytest.raises(ValueError, match=bound):
        evaluate_domain_shift(featurizer, _domains_data(), n_components=[1000], progress=False)
    with pytest.raises(ValueError, match=bound):
        shortcut(featurizer, n_per_cell=2, rho=0.5, n_components=[1000], progress=False)


def test_the_stand_in_holds_the_shape_and_no_data():
    data = unencoded(_domains_data(), DIM)
    assert (data.n_samples, data.n_features) == (60, DIM)
    assert data.embeddings.strides == (0, 0)
    assert data.domain_names == ["art", "photo", "sketch"] and data.name == "tiny"


@pytest.mark.parametrize("entry_point", DOMAIN_SHIFT)
def test_two_domains_with_a_grid_and_source_tuning_fail_before_encoding(entry_point):
    two = _domains_data()
    keep = two.domains != "sketch"
    two = Bunch(**{**two, "labels": two.labels[keep], "domains": two.domains[keep]})
    two.images, two.domain_names = [None] * int(keep.sum()), ["art", "photo"]
    evaluate = evaluate_domain_shift if entry_point == "domain_shift" else evaluate_open_class
    with pytest.raises(ValueError, match=r"target 'art' leaves only \['photo'\] as sources"):
        evaluate(NoEncodingFeaturizer(), two, progress=False)
    with pytest.raises(EncodingStarted):  # a single candidate, or the oracle, needs no LODO
        evaluate(NoEncodingFeaturizer(), two, lam=1.0, n_components=4, progress=False)
    with pytest.raises(EncodingStarted):
        evaluate(NoEncodingFeaturizer(), two, tuning="oracle", progress=False)
