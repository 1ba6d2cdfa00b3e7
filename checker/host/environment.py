"""The environment of a process the checks start: only what it needs to run, nothing of the runner.

Student servers, build steps and the judges get these few variables from the runner's own
environment and whatever the caller adds; no PYTHONPATH, no credentials, no `COURSE_*` setting
leaks into them by accident. Standard library only: the early build imports it before the SDK.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

PLAIN_VARIABLES = ("PATH", "HOME", "LANG", "TMPDIR", "SSL_CERT_FILE")


def plain_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The runner's values of `PLAIN_VARIABLES` (those it has), then `extra` over them."""
    env = {name: os.environ[name] for name in PLAIN_VARIABLES if name in os.environ}
    env.update(extra or {})
    return env
