"""`python -m helpers provision [NAME ...]`: make the datasets ready (checked folder + tensor cache)."""

import sys

from .data import DataError, provision


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "provision":
        print("usage: python -m helpers provision [mnist_sample] [mnist_png]", file=sys.stderr)
        return 2
    try:
        provision(argv[1:] or None)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


sys.exit(main(sys.argv[1:]))
