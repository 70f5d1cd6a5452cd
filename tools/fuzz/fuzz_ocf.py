"""atheris harness: ``ocf`` of sdls_qkd.fuzz.targets (see _harness.py for the options)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import main  # noqa: E402

if __name__ == "__main__":
    main("ocf")
