"""What really went wrong inside a tool that answered only "Error executing tool X".

MCPServer withholds a crashing tool's exception from the model on purpose and logs it instead.
A check still wants to tell the student the real error, so this handler keeps what the SDK logs,
in whichever process runs the student's tools (the check itself, or the process hosting them).
"""

from __future__ import annotations

import logging
import os

from checker.runner.failures import describe_failure


class _ToolCrashes(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.crashes: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            self.crashes.append(exc.__cause__ or exc)


_TOOL_CRASHES = _ToolCrashes()
_sdk_tool_log = logging.getLogger("mcp.server.mcpserver.server")
_sdk_tool_log.addHandler(_TOOL_CRASHES)
_sdk_tool_log.propagate = False  # the crash goes into the check's message; skip rendering a traceback


def last_tool_crash() -> str:
    """The student's exception behind the latest redacted tool crash, in one line ("" if none)."""
    if not _TOOL_CRASHES.crashes:
        return ""
    return describe_failure(_TOOL_CRASHES.crashes[-1], os.environ.get("COURSE_EDITION", ""))
