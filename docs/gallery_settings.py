"""Settings of the example gallery that sphinx-gallery takes by their qualified names."""

from __future__ import annotations

import re

# Figures are saved at this resolution, so that a figure of 7 inches fills the page's column
# at its natural size and its legends stay legible (about 12 px for 8-point text).
SAVEFIG_DPI = 150


class ExampleNumberSortKey:
    """Order examples by the number in ``plot_<number>_<name>.py``, for
    ``within_subsection_order`` (``FileNameSortKey`` puts plot_10 before plot_1_)."""

    def __init__(self, src_dir: str) -> None:
        self.src_dir = src_dir

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __call__(self, filename: str) -> tuple[int, str]:
        number = re.match(r"plot_(\d+)_", filename)
        return (int(number.group(1)) if number else 10**6, filename)


def save_figures_larger(gallery_conf: dict, fname: str | None) -> None:
    """A ``reset_modules`` step, after matplotlib's reset: raise the resolution figures are
    saved at."""
    import matplotlib

    matplotlib.rcParams["savefig.dpi"] = SAVEFIG_DPI
