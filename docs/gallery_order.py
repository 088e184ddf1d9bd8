"""The order of the example gallery: by the number in the file name, so that plot_10 comes
after plot_9 (sphinx-gallery's ``FileNameSortKey`` sorts plot_10 before plot_1_)."""

from __future__ import annotations

import re


class ExampleNumberSortKey:
    """Sort key of ``plot_<number>_<name>.py`` files, for ``within_subsection_order``."""

    def __init__(self, src_dir: str) -> None:
        self.src_dir = src_dir

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __call__(self, filename: str) -> tuple[int, str]:
        number = re.match(r"plot_(\d+)_", filename)
        return (int(number.group(1)) if number else 10**6, filename)
