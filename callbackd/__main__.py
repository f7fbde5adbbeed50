"""``python -m callbackd`` is the ``callbackd`` command."""

import sys

from callbackd.cli import main

sys.exit(main())
