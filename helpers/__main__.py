"""`python -m helpers provision [NAME ...]`: make the datasets ready (checked folder + tensor cache).

The data layer reports through the ``helpers.data`` logger; while the command runs, that logger
prints to stderr at INFO, so the command says what it does (extracting, decoding, waiting for
another process, ready).
"""

import logging
import sys

from .storage import DATASETS, DataError, provision


def main(argv: list[str]) -> int:
    """Run the command line; the exit status is 0 on success, 1 on a data error, 2 on a usage error."""
    if not argv or argv[0] != "provision" or any(a not in DATASETS for a in argv[1:]):
        print(f"usage: python -m helpers provision [{'] ['.join(DATASETS)}]", file=sys.stderr)
        return 2
    log = logging.getLogger("helpers.data")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[helpers.data] %(message)s"))
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        provision(argv[1:] or None)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
