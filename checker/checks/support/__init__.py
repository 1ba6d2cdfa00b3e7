"""One lesson's check plumbing (workspaces, fakes, drivers), shared by its visible and hidden checks.

`support/lessonNN.py` holds what lesson NN's checks set up; the checks files keep the
requirements and their teaching messages. Nothing here is a check, so pytest collects nothing."""
