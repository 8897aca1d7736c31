"""``python -m seqlab.cli``: the same command line as the ``seqlab`` console script."""

import sys

from seqlab.cli.main import main

sys.exit(main())
