"""The check author's toolkit: what every lesson's checks need, written once.

A checks file should read as the lesson's list of requirements; the plumbing lives here (for
every lesson) or in `checker/checks/support/lessonNN.py` (one lesson's workspaces, fakes and
drivers, shared by its visible and hidden checks).

- `eras`: the two protocol revisions every client-facing check speaks.
- `text`: random words and documents, and the text of a tool result.
- `processes`: free ports, waiting for a port, stopping what a check started, and a file for its stderr.
- `logs`: rich's traceback drawing off while a check provokes logged errors.
- `services`: Redis and nginx for the student's servers, and waiting for a server's /health.
"""
