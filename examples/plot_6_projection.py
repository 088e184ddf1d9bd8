"""
What the invariant subspace removes: a 2-D view
===============================================

CLIP embeddings of ToyWorld images cluster by style as well as by shape. CLIP-ICM should
keep the shape and drop the style. This example projects the embeddings to two dimensions
with PCA, before and after CLIP-ICM, and colours the points by domain (style) and by class
(shape). A linear probe that tries to predict the *domain* from the embeddings measures the
same thing with a number.
"""

# %%
# Exact counterfactual interventions
# ----------------------------------
# ToyWorld can re-render each image with only its style changed
# (:func:`~skcicm.datasets.render_counterfactuals`): the same shape, size, position and
# rotation in another of the world's styles. These pairs are ideal interventions on the
# style, and we pass their embeddings to ``fit`` as ``interventions``.
import matplotlib.pyplot as plt
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from skcicm import CLIPFeaturizer, InvariantCausalMechanism
from skcicm.datasets import make_toyworld, render_counterfactuals

world = make_toyworld(
    n_per_cell=12,
    domains=["photo", "sketch", "cartoon", "mosaic"],
    classes=["circle", "square", "triangle", "star", "cross"],
    random_state=0,
)
twins = render_counterfactuals(world, change="style", random_state=0)
featurizer = CLIPFeaturizer("toyclip", pretrained=None, progress=False)
Z = featurizer.transform(world.images)
Z_do = featurizer.transform(twins)

icm = InvariantCausalMechanism(n_components=16, lam=1.0, lam_scale="trace")
icm.fit(Z, world.labels, interventions=Z_do)
projected = icm.transform(Z)

# %%
# How well can the domain be predicted?
# -------------------------------------
# Five-fold cross-validated accuracy of a logistic regression predicting the style (chance
# is 1/4) and the shape (chance 1/5), from the 128 CLIP dimensions and from the 16
# invariant ones.
probe = LogisticRegression(max_iter=2000)
views = {"CLIP (128 dims)": Z, "CLIP-ICM (16 dims)": projected}
rows = {}
for name, features in views.items():
    rows[name] = [
        cross_val_score(probe, features, target, cv=5).mean()
        for target in (world.domains, world.labels)
    ]
    print(f"{name}: domain {rows[name][0]:.2f}, class {rows[name][1]:.2f}")

# %%
# The 2-D view
# ------------
# Each panel is its own PCA of the embeddings shown, so axes are not comparable between
# rows. The legends name the colours of each column.
fig, axes = plt.subplots(2, 2, figsize=(8, 7))
for row, (name, features) in enumerate(views.items()):
    points = PCA(n_components=2).fit_transform(features)
    for column, (labels, names, title) in enumerate(
        [
            (world.domains, world.domain_names, "domain"),
            (world.labels, world.class_names, "class"),
        ]
    ):
        ax = axes[row, column]
        for index, label_name in enumerate(names):
            mask = (labels == label_name) if column == 0 else (labels == index)
            ax.scatter(*points[mask].T, s=9, alpha=0.7, label=label_name)
        accuracy = rows[name][column]
        ax.set_title(
            f"{name}, coloured by {title}\n({title} probe accuracy {accuracy:.2f})", fontsize=10
        )
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_ylabel("before: CLIP embeddings")
    axes[1, 0].set_ylabel("after: invariant subspace (K=16)")
for column in range(2):
    handles, labels = axes[0, column].get_legend_handles_labels()
    axes[0, column].legend(handles, labels, fontsize=8, markerscale=2, loc="best")
fig.suptitle("PCA of ToyCLIP embeddings before and after CLIP-ICM")
fig.tight_layout()
plt.show()

# %%
# If the domain probe's accuracy falls towards chance while the class probe's stays high,
# the subspace has removed style and kept shape. What remains of the domain signal is
# variation that the style counterfactuals did not move.
