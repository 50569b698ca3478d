"""Every test's gateway state (the SQLite decision store) lives in a temporary folder, never in
the user's ~/.local/state."""

from __future__ import annotations

import os
import tempfile

# Set at import, before any test builds settings; subprocesses (e2e) inherit it.
os.environ.setdefault("SDM_ROUTER_STATE_DIR", tempfile.mkdtemp(prefix="sdm-router-state-"))
