"""
Zero-shot versus linear probe in the invariant subspace
=======================================================

:class:`~skcicm.InvariantCausalMechanism` has two heads. The **linear probe** fits a
logistic regression on the projected image embeddings of the training images. The
**zero-shot** head needs no labelled images: it compares each projected image with the
projected text embeddings of the class prompts ("a photo of a star.") by cosine similarity.
The projection is the same for both; only what is compared in the subspace changes.

This example keeps K directions for a range of K and scores both heads on a held-out style.
"""

# %%
# Encode once
# -----------
# With ``class_names`` the featurizer also hands the class-prompt embeddings to the
# estimator, which the zero-shot head uses. Image interventions are the paper's
# augmentations, one copy per image.
import matplotlib.pyplot as plt
import numpy as np

from skcicm import CLIPFeaturizer, InvariantCausalMechanism
from skcicm.datasets import make_toyworld

sources = ["photo", "sketch", "cartoon", "mosaic", "neon"]
target = "painting"
ks = [4, 8, 16, 32, 64, 128]
heads = {"zero_shot": "zero-shot", "linear_probe": "linear probe"}


def run(seed):
    world = make_toyworld(n_per_cell=10, domains=[*sources, target], random_state=seed)
    train = np.isin(world.domains, sources)
    featurizer = CLIPFeaturizer(
        "toyclip", pretrained=None, class_names=world.class_names, progress=False
    )
    Z_train = featurizer.fit_transform(world.images[train])
    Z_test = featurizer.transform(world.images[~train])
    return {
        head: [
            InvariantCausalMechanism(n_components=k, lam=1.0, lam_scale="trace", head=head)
            .fit(Z_train, world.labels[train])
            .score(Z_test, world.labels[~train])
            for k in ks
        ]
        for head in heads
    }


runs = [run(seed) for seed in (0, 1, 2)]

# %%
# Accuracy against K
# ------------------
# At K = 128 (all directions) with ``lam=1`` the subspace is a rotation of CLIP's space, and
# both heads give plain CLIP's accuracy; smaller K drops the directions that the
# augmentations move most relative to their variance.
fig, ax = plt.subplots(figsize=(6, 3.8))
for (head, label), color in zip(heads.items(), ["tab:orange", "tab:blue"], strict=True):
    scores = np.array([r[head] for r in runs])
    ax.errorbar(
        ks, scores.mean(0), yerr=scores.std(0), marker="o", capsize=3, color=color, label=label
    )
ax.set_xscale("log", base=2)
ax.set_xticks(ks, [str(k) for k in ks])
ax.set_xlabel("n_components (K); 128 = every direction")
ax.set_ylabel(f"accuracy on {target} (held out)")
ax.set_title("CLIP-ICM, lam = 1 (trace-scaled): mean ± std over 3 seeds")
ax.legend(title="head")
fig.tight_layout()
plt.show()

# %%
# Down to K = 8 both heads stay within a few points of their accuracy with every direction.
# At K = 4 the zero-shot head falls much further than the probe: the text embeddings of the
# classes must keep their meaning after projection, and a subspace estimated from image data
# alone can drop directions that the text needs. The linear probe re-learns its weights in
# the subspace, so it only needs the class information of the images to survive.
for head, label in heads.items():
    means = np.array([r[head] for r in runs]).mean(0)
    print(label, " ".join(f"K={k}: {m:.3f}" for k, m in zip(ks, means, strict=True)))
