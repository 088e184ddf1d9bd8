"""A data set encoded once: the embeddings every protocol fits and scores.

:func:`embed_dataset` encodes each image (clean and intervened copies), the text prompt pairs
and the class prompts with a :class:`~skcicm.CLIPFeaturizer` and returns an
:class:`EmbeddedDataset`. With a featurizer that has a ``cache_dir``, the embeddings are also
kept on disk, so an interrupted run resumes without re-encoding and a second protocol on the
same images encodes nothing.

:meth:`EmbeddedDataset.source_only` is the one place that decides what a model fitted for a
target domain may see: nothing of the target, not its intervened copies, not a counterfactual
rendered in its style, not a prompt that names it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from skcicm.evaluation.options import INTERVENTION_SOURCES, check_choice
from skcicm.prompts import class_prompt_names, expand_prompt_pairs, pair_names_any


@dataclasses.dataclass
class EmbeddedDataset:
    """Embeddings of a data set, with its labels, domains and interventional data.

    Parameters
    ----------
    embeddings : ndarray of shape (n_samples, n_features)
        Clean image embeddings.
    labels : ndarray of shape (n_samples,)
        Class indices into ``class_names``.
    domains : ndarray of shape (n_samples,)
        Domain name of every sample.
    class_names : list of str
        Name of each class; label ``i`` is ``class_names[i]``.
    domain_names : list of str
        Names of the domains, in the data set's order.
    name : str, default="dataset"
        Name of the data set, recorded in results rows.
    class_embeddings : ndarray of shape (n_classes, n_features), default=None
        Class prompt embeddings, for the zero-shot head.
    interventions : ndarray of shape (n_samples, n_views, n_features), default=None
        Intervened copies of every sample (augmentations or counterfactuals), sample-major.
    intervention_styles : ndarray of shape (n_samples, n_views), default=None
        The domain each intervened copy is rendered in (counterfactuals), so that copies in a
        target's style are left out of its fit; None when the copies have no domain.
    intervention_pairs : tuple of two ndarrays of shape (n_pairs, n_features), default=None
        Embeddings of text prompt pairs that differ only in a variant word.
    intervention_pair_texts : tuple of two lists of str, default=None
        The prompts of ``intervention_pairs``; pairs naming a target are left out of its fit.
    domain_interventions : bool, default=False
        Fit on class-conditional contrasts between the training domains.
    imagenet_indices : ndarray of shape (n_classes,), default=None
        ImageNet class index of every class (ImageNet variants only).
    validation_views : ndarray of shape (n_samples, n_views, n_features), default=None
        Intervened copies that the ``"interventional"`` tuning rule scores on, when they are
        not the fitted ``interventions`` (a fit on text pairs or domain contrasts has no
        per-sample copies); None scores on ``interventions``.

    Examples
    --------
    >>> import numpy as np
    >>> data = EmbeddedDataset(
    ...     embeddings=np.eye(3), labels=np.array([0, 1, 0]),
    ...     domains=np.array(["a", "a", "b"]), class_names=["x", "y"], domain_names=["a", "b"],
    ... )
    >>> data.n_samples, data.n_features
    (3, 3)
    """

    embeddings: np.ndarray
    labels: np.ndarray
    domains: np.ndarray
    class_names: list[str]
    domain_names: list[str]
    name: str = "dataset"
    class_embeddings: np.ndarray | None = None
    interventions: np.ndarray | None = None
    intervention_styles: np.ndarray | None = None
    intervention_pairs: tuple[np.ndarray, np.ndarray] | None = None
    intervention_pair_texts: tuple[list[str], list[str]] | None = None
    domain_interventions: bool = False
    imagenet_indices: np.ndarray | None = None
    validation_views: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels)
        self.domains = np.asarray(self.domains).astype(str)
        self.class_names = [str(c) for c in self.class_names]
        self.domain_names = [str(d) for d in self.domain_names]
        n = len(self.embeddings)
        if np.ndim(self.embeddings) != 2:
            raise ValueError(
                f"{self.name}: embeddings must be 2-d; got {np.shape(self.embeddings)}."
            )
        for field in ("labels", "domains"):
            if len(getattr(self, field)) != n:
                raise ValueError(
                    f"{self.name}: {field} has {len(getattr(self, field))} entries for {n} "
                    "embeddings."
                )
        for field in ("interventions", "validation_views"):
            views = getattr(self, field)
            if views is not None and (
                views.ndim != 3 or views.shape[0] != n or views.shape[2] != self.n_features
            ):
                raise ValueError(
                    f"{self.name}: {field} must have shape (n_samples={n}, n_views, "
                    f"n_features={self.n_features}); got {views.shape}."
                )
        if self.intervention_styles is not None and (
            self.interventions is None
            or self.intervention_styles.shape != self.interventions.shape[:2]
        ):
            raise ValueError(
                f"{self.name}: intervention_styles must have shape (n_samples, n_views) of the "
                "interventions."
            )

    @property
    def n_samples(self) -> int:
        """Number of images."""
        return len(self.embeddings)

    @property
    def n_features(self) -> int:
        """Embedding dimension."""
        return int(self.embeddings.shape[1])

    def replace(self, **changes: Any) -> EmbeddedDataset:
        """A copy with ``changes`` applied (arrays are shared, not copied).

        Parameters
        ----------
        **changes : dict
            New values of fields, by field name.

        Returns
        -------
        EmbeddedDataset
            The copy.
        """
        return dataclasses.replace(self, **changes)

    def source_only(self, target: str | None) -> EmbeddedDataset:
        """What a model evaluated on domain ``target`` may be fitted on.

        The target's intervened copies and validation views are set to NaN, so that fitting
        or scoring on them would fail; counterfactual copies rendered in the target's style
        are dropped from every other sample; text pairs whose prompts name the target are
        dropped. With ``target=None``
        (no held-out domain) the data set is returned unchanged.

        Parameters
        ----------
        target : str or None
            The held-out domain, or None.

        Returns
        -------
        EmbeddedDataset
            A copy that carries nothing of ``target`` into a fit (its rows are still there,
            to be scored).

        Examples
        --------
        >>> import numpy as np
        >>> data = EmbeddedDataset(
        ...     embeddings=np.zeros((2, 2)), labels=[0, 1], domains=["a", "b"],
        ...     class_names=["x", "y"], domain_names=["a", "b"],
        ...     interventions=np.ones((2, 1, 2)),
        ... )
        >>> data.source_only("b").interventions[:, 0, 0]
        array([ 1., nan])
        """
        if target is None:
            return self
        is_target = self.domains == target
        interventions, styles = self.interventions, self.intervention_styles
        if styles is not None:
            # Every other sample has exactly one copy in the target's style: drop that column.
            keep = styles != target
            keep[is_target] = np.arange(styles.shape[1]) > 0
            interventions = interventions[keep].reshape(self.n_samples, -1, self.n_features)
            styles = styles[keep].reshape(self.n_samples, -1)
            styles[is_target] = ""
        if interventions is not None:
            interventions = _without_rows(interventions, is_target)
        validation_views = self.validation_views
        if validation_views is not None:
            validation_views = _without_rows(validation_views, is_target)
        pairs, texts = pairs_without_target(
            self.intervention_pairs, self.intervention_pair_texts, target
        )
        return self.replace(
            interventions=interventions,
            intervention_styles=styles,
            intervention_pairs=pairs,
            intervention_pair_texts=texts,
            validation_views=validation_views,
        )


def _without_rows(views: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """A float copy of ``views`` with ``rows`` set to NaN, so that any use of them fails."""
    views = views.astype(np.result_type(views, np.float32))
    views[rows] = np.nan
    return views


def pairs_without_target(
    pairs: tuple[np.ndarray, np.ndarray] | None,
    texts: tuple[Sequence[str], Sequence[str]] | None,
    target: str | None,
) -> tuple[tuple | None, tuple | None]:
    """The text intervention pairs and their prompts, less those that name ``target``.

    A prompt such as "a painting of a dog" carries the target's style into the fit; source-only
    evaluation must not see it, even as a word. Returns ``(None, None)`` when no pair is left.

    Examples
    --------
    >>> import numpy as np
    >>> texts = (["a photo of a dog", "a photo of a dog"],
    ...          ["a sketch of a dog", "a clip art of a dog"])
    >>> pairs, kept = pairs_without_target((np.zeros((2, 3)), np.ones((2, 3))), texts, "clip_art")
    >>> pairs[0].shape, kept[1]
    ((1, 3), ['a sketch of a dog'])
    """
    if pairs is None or target is None or texts is None:
        return pairs, texts
    keep = np.array([not pair_names_any(pair, [target]) for pair in zip(*texts, strict=True)])
    if not keep.any():
        return None, None
    kept_texts = tuple([t for t, k in zip(side, keep, strict=True) if k] for side in texts)
    return (pairs[0][keep], pairs[1][keep]), kept_texts


def _counterfactual_views(
    featurizer: Any, dataset: Mapping[str, Any], embeddings: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each image re-rendered exactly in every other domain's style, and those styles.

    Returns views of shape (n, n_domains - 1, d) and their styles (n, n_domains - 1), in the
    order of ``domain_names``.
    """
    # ToyWorld pulls in PIL drawing and scipy.ndimage: only for this source.
    from skcicm.datasets.toyworld import render_counterfactuals

    names = [str(d) for d in dataset["domain_names"]]
    domains = np.asarray(dataset["domains"]).astype(str)
    own = np.array([names.index(d) for d in domains])
    n, d = embeddings.shape
    views = np.empty((n, len(names) - 1, d), dtype=embeddings.dtype)
    styles = np.empty((n, len(names) - 1), dtype=object)
    for j, style in enumerate(names):
        others = np.flatnonzero(own != j)
        # Column of style j among a sample's other styles, in domain_names order.
        column = j - (own[others] < j)
        # Forcing the style leaves nothing to draw, so the twins do not depend on the seed.
        twins = render_counterfactuals(dataset, change="style", domain=style, indices=others)
        views[others, column] = featurizer.transform(twins)
        styles[others, column] = style
    return views, styles


def dataset_fields(dataset: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of an :class:`EmbeddedDataset` that a loaded data set gives without encoding.

    Labels, domains, class and domain names, name and, for ImageNet variants,
    ``imagenet_indices``: what the protocols' checks read before encoding, too.
    """
    fields = {
        "labels": np.asarray(dataset["labels"]),
        "domains": np.asarray(dataset["domains"]),
        "class_names": list(dataset["class_names"]),
        "domain_names": list(dataset["domain_names"]),
        "name": str(dataset.get("name", "dataset")),
    }
    if "imagenet_indices" in dataset:
        fields["imagenet_indices"] = np.asarray(dataset["imagenet_indices"])
    return fields


def check_interventions(
    featurizer: Any, dataset: Mapping[str, Any], interventions: Sequence[str]
) -> list[str]:
    """Validate the intervention sources for ``featurizer`` and ``dataset``, encoding nothing.

    Parameters
    ----------
    featurizer : CLIPFeaturizer
        The featurizer that will encode ``dataset``.
    dataset : Bunch
        The data set, as :func:`embed_dataset` takes it.
    interventions : sequence of {"image", "counterfactual", "text", "domain"}
        Sources of interventional data, as in :func:`embed_dataset`.

    Returns
    -------
    interventions : list of str
        The sources, as a list.

    Raises
    ------
    ValueError
        When a source is unknown, ``"image"`` and ``"counterfactual"`` are both requested,
        ``"text"`` is requested from a featurizer without ``text_interventions``, or
        ``"counterfactual"`` from a data set that cannot render them (only ToyWorld can).
    """
    interventions = check_choice(
        interventions, INTERVENTION_SOURCES, "interventions", allow_empty=True
    )
    if {"image", "counterfactual"} <= set(interventions):
        raise ValueError(
            "interventions 'image' and 'counterfactual' are exclusive: each gives the intervened "
            "copies of the images; choose one."
        )
    if "text" in interventions and not getattr(featurizer, "text_interventions", None):
        raise ValueError(
            "interventions include 'text' but the featurizer has no text_interventions; "
            "set CLIPFeaturizer(text_interventions=...), e.g. "
            "skcicm.prompts.style_prompt_pairs(['photo', 'sketch'])."
        )
    if "counterfactual" in interventions:
        if "factors" not in dataset or "image_size" not in dataset:
            raise ValueError(
                "interventions include 'counterfactual', but "
                f"{dataset.get('name', 'this dataset')!r} cannot render counterfactuals: only "
                "ToyWorld (skcicm.datasets.make_toyworld) records the factors to re-render an "
                "image. Use 'image', 'text' or 'domain'."
            )
        if len(dataset["domain_names"]) < 2:
            raise ValueError("interventions 'counterfactual': styles need at least two domains.")
    return interventions


def embed_dataset(
    featurizer: Any,
    dataset: Mapping[str, Any],
    *,
    interventions: Sequence[str] = ("image",),
    templates: Sequence[str] | None = None,
    text_classes: Sequence[int] | None = None,
    class_embeddings: bool = True,
) -> EmbeddedDataset:
    """Encode a dataset once: everything the protocols fit and score.

    Parameters
    ----------
    featurizer : CLIPFeaturizer
        Encodes images and prompts; give it a ``cache_dir`` to keep the embeddings on disk.
    dataset : Bunch
        With ``images``, ``labels``, ``domains``, ``class_names`` and ``domain_names``, and
        optionally ``prompt_names`` (class names as written in prompts), ``templates``,
        ``name`` and ``imagenet_indices``, as returned by the loaders of
        :mod:`skcicm.datasets`.
    interventions : sequence of {"image", "counterfactual", "text", "domain"}, \
default=("image",)
        Sources of interventional data for CLIP-ICM: augmented copies of every image
        (``featurizer.intervention_embeddings``); exact re-renderings of every image in each
        other domain's style (ToyWorld only); the featurizer's ``text_interventions`` prompt
        pairs over the class names; class-conditional contrasts between the training domains.
        "image" and "counterfactual" are exclusive.
    templates : sequence of str, default=None
        Zero-shot prompt templates; defaults to the dataset's ``templates``, then to the
        featurizer's.
    text_classes : sequence of int, default=None
        Classes whose names fill the text prompt pairs; None uses all. The open-class
        protocol passes the base classes, so that novel class names are never fitted on.
    class_embeddings : bool, default=True
        Compute the class prompt embeddings (targets scored against another dataset's
        classes do not need them).

    Returns
    -------
    embedded : EmbeddedDataset
        The embeddings, labels and domains, with the interventional data of the requested
        sources and (``class_embeddings=True``) the class prompt embeddings.

    Raises
    ------
    ValueError
        When the intervention sources do not apply (``check_interventions``), before
        any image is encoded.
    """
    interventions = check_interventions(featurizer, dataset, interventions)
    images = dataset["images"]
    prompt_names = list(dataset.get("prompt_names") or dataset["class_names"])
    fields: dict[str, Any] = {}
    # Prompts first: a bad class name or template fails before any image is encoded.
    if "text" in interventions:
        names = prompt_names if text_classes is None else [prompt_names[i] for i in text_classes]
        fields["intervention_pairs"] = featurizer.text_intervention_pairs(names)
        fields["intervention_pair_texts"] = expand_prompt_pairs(
            featurizer.text_interventions, class_prompt_names(names)
        )
    if class_embeddings:
        fields["class_embeddings"] = featurizer.class_embeddings(
            prompt_names, templates or dataset.get("templates")
        )
    embeddings = featurizer.transform(images)
    if "image" in interventions:
        fields["interventions"] = featurizer.intervention_embeddings(images)
    if "counterfactual" in interventions:
        fields["interventions"], fields["intervention_styles"] = _counterfactual_views(
            featurizer, dataset, embeddings
        )
    return EmbeddedDataset(
        embeddings=embeddings,
        domain_interventions="domain" in interventions,
        **dataset_fields(dataset),
        **fields,
    )
