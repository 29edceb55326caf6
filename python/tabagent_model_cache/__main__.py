"""``python -m tabagent_model_cache --version``: which package and library are installed."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    """Parse ``argv`` and print what was asked; returns the exit code."""
    import tabagent_model_cache
    from tabagent_model_cache import _native

    parser = argparse.ArgumentParser(
        prog="python -m tabagent_model_cache",
        description="tabagent_model_cache: a HuggingFace model cache (libtabcache) for Python.",
    )
    parser.add_argument("--version", action="store_true", help="print the package and library versions")
    args = parser.parse_args(argv)
    if args.version:
        print(
            f"tabagent_model_cache {tabagent_model_cache.__version__} "
            f"(libtabcache {_native.LIBRARY_VERSION} from {_native.library_path()})"
        )
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
