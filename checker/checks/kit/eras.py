"""The protocol revisions a check's client speaks.

Every client-facing requirement holds for a 2026-07-28 client (the SDK's `auto` mode negotiates
it) and for a 2025-11-25 one (`legacy`): checks loop over `MODES` or take `mode` from
`each_mode`, so an answer that only works in one era fails."""

from __future__ import annotations

import pytest

MODERN = "2026-07-28"
LEGACY = "2025-11-25"
MODES = {"auto": MODERN, "legacy": LEGACY}  # the client's mode -> the revision it ends up speaking

each_mode = pytest.mark.parametrize("mode", list(MODES))
