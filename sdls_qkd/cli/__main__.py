"""``python -m sdls_qkd.cli``."""

import sys

from sdls_qkd.cli import main

sys.exit(main())
