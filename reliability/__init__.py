"""Fault injection, scale-out and figures for the My Number platform (see docs/reliability.md).

The CLI package (`cli/mynumber_cli`: the native stack, the service launcher, the demo's
population and publisher) is reused here, so `cli/` goes on the import path first.
"""

import sys
from pathlib import Path

_CLI = str(Path(__file__).resolve().parents[1] / "cli")
if _CLI not in sys.path:
    sys.path.insert(0, _CLI)
