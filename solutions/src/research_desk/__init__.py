"""research_desk: a workspace research server built over the course, one feature per lesson.

Each feature lives in its own module (context, sampling, progress, roots, transport, scaling,
errors); `server` wires them together. Importing the package imports none of them, so a
half-finished lesson never breaks the others.
"""

__version__ = "0.1.0"
