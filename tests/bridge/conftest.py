"""Bridge tests import their helpers as `bridge_helpers` (also under pytest-xdist)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
