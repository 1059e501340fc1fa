"""``python -m ems.cli``: the same as the ``ems`` command."""

import sys

from ems.cli.main import main

sys.exit(main())
