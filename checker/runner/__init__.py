"""Checking one lesson: build the request, run its checks in a worker, read the result back."""
