"""The ``skcicm`` command line.

``skcicm evaluate`` (or ``python -m skcicm evaluate``) runs an evaluation protocol end to end:
it loads a dataset, encodes every image once (cached on disk under the output folder), fits
and scores the methods, and writes the results file, the Markdown table and the plots. With
no arguments at all, ``skcicm`` evaluates ToyCLIP on ToyWorld, which needs nothing from the
network. ``skcicm report RESULTS_DIR`` re-renders the table and plots of such a run from its
results files, without refitting.

``skcicm.cli.parser`` builds the options (one builder per subcommand); the work of a
subcommand is imported only when it runs, so that ``skcicm --help`` loads no deep-learning or
plotting library.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from skcicm.cli.parser import build_parser

__all__ = ["build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``skcicm`` command; return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # Bare `skcicm` (or options only) means `skcicm evaluate`.
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["evaluate", *argv]
    args = build_parser().parse_args(argv)
    try:
        if args.command == "report":
            from skcicm.cli.report import run_report

            return run_report(args)
        from skcicm.cli.evaluate import run_evaluate

        return run_evaluate(args, argv)
    except KeyboardInterrupt:
        if args.command == "report":
            print("skcicm: interrupted.", file=sys.stderr)
        else:
            print(
                "skcicm: interrupted; embeddings encoded so far are cached, run the same "
                "command again to resume.",
                file=sys.stderr,
            )
        return 130
    except (ValueError, OSError) as error:
        if args.debug:
            raise
        print(f"skcicm: error: {error}", file=sys.stderr)
        return 1
