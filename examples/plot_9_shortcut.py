"""
Shortcuts: accuracy against the strength of a spurious correlation
====================================================================

CLIP-ICM is meant for embeddings that carry *variant* factors a classifier can lean on. In
the Waterbirds situation, each class mostly comes with "its" background in the training
domains. A probe that learns the background instead of the object fails where the
correlation breaks.

The shortcut protocol makes such data with ToyWorld
(:func:`skcicm.datasets.make_toyworld_shortcut`). In the six source styles, a fraction
``rho`` of each shape is drawn in "its" style (the circle mostly as a photo, the square
mostly as a sketch...). In the target, the same styles, every shape is drawn in another
shape's style. The style is the shortcut the shipped ToyCLIP's probe takes: its training
captions name the style, so the style is as plain in its embeddings as the shape
(``docs/results.md``, "Calibrating the shortcut"). This example runs the protocol
(:func:`skcicm.evaluation.shortcut`) at several values of ``rho`` and draws the target
accuracy of the CLIP probe and of CLIP-ICM against ``rho``.
"""

# %%
# Run the protocol
# ----------------
# Small worlds (10 images per cell, where rho = 0.8 and 0.9 are exact), two seeds and a small
# grid keep this example short. CLIP-ICM's intervention source is exact counterfactuals: each
# source image re-rendered in other styles, so the Deltas differ only in the shortcut.
# ``lam`` and ``n_components`` are chosen on the source styles only, on 5 stratified folds of
# the source images (the protocol's default: a held-out style would hold nearly one whole
# class), scored on the held-out images and their counterfactual copies
# (:class:`~skcicm.model_selection.InterventionalScorer`, ``tuning="interventional"``); the
# target oracle is computed too, as an upper bound.
import matplotlib.pyplot as plt
import numpy as np

from skcicm import CLIPFeaturizer
from skcicm.evaluation import shortcut
from skcicm.evaluation.reporting import mean_confidence_interval

featurizer = CLIPFeaturizer("toyclip", progress=False)
common = dict(n_per_cell=10, seeds=[0, 1], progress=False)
result = shortcut(
    featurizer,
    rho=[0.5, 0.8, 0.9],
    interventions=["counterfactual"],
    methods=["clip_linear_probe", "icm_linear_probe"],
    lam=[0.0, 1.0, 3.0],
    n_components=[32, 128],
    tuning=["interventional", "oracle"],
    **common,
)
# The control: the style drawn independently of the shape (rho = 1 / 6 styles).
control = shortcut(
    featurizer,
    rho=[1 / 6],
    interventions=[],
    methods=["clip_linear_probe"],
    tuning="source",
    **common,
)
print(f"{len(result.results)} result rows")

# %%
# Accuracy against rho
# --------------------
# Target accuracy, mean and 95% t-interval over the two seeds (so the intervals are wide).
# The grey line is the CLIP probe on the control world without the shortcut.
curves = {
    "CLIP probe": (
        {"method": "clip_linear_probe"},
        dict(color="tab:red", marker="o", linestyle="-"),
    ),
    "CLIP-ICM, chosen on the sources": (
        {"method": "icm_linear_probe", "tuning": "source-lodo-interventional"},
        dict(color="tab:blue", marker="s", linestyle="--"),
    ),
    "CLIP-ICM, target oracle (upper bound)": (
        {"method": "icm_linear_probe", "tuning": "target-oracle"},
        dict(color="tab:green", marker="^", linestyle=":"),
    ),
}
rhos = sorted({row["rho"] for row in result.results})
figure, axis = plt.subplots(figsize=(6, 4))
for label, (keep, style) in curves.items():
    stats = [
        mean_confidence_interval(
            row["accuracy"]
            for row in result.results
            if row["rho"] == rho and all(row[k] == v for k, v in keep.items())
        )
        for rho in rhos
    ]
    mean, half = (100 * np.array(column) for column in zip(*stats, strict=True))
    axis.errorbar(rhos, mean, yerr=half, label=label, capsize=3, **style)
control_mean, _ = mean_confidence_interval(row["accuracy"] for row in control.results)
axis.axhline(100 * control_mean, color="0.5", linestyle="-.", label="CLIP probe, control")
axis.set_xlabel("rho: fraction of each source cell in its class's own style")
axis.set_ylabel("target accuracy (%)")
axis.set_ylim(0, 100)
axis.legend(loc="lower left", fontsize=8)
axis.grid(alpha=0.3)
plt.show()

# %%
# Worst-group accuracy and the chosen hyperparameters
# ---------------------------------------------------
# The spurious-correlation literature reports the accuracy of the worst (class, shortcut
# value) group next to the average. In the target each shape carries one style, so the worst
# group is the worst shape.
for row in result.results:
    rule = row["tuning"] if row["method"] == "icm_linear_probe" else "-"
    print(
        f"rho={row['rho']:.1f} seed={row['seed']} {row['method']:>17} {rule:>26}: "
        f"accuracy {100 * row['accuracy']:5.1f}, worst group {100 * row['worst_group']:5.1f}, "
        f"lam={row['lam']:g}, K={row['n_components']}"
    )
