"""``python -m lmmkit``: the ``lmmkit`` command."""

import sys

from lmmkit.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
