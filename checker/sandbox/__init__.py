"""Where student code may run: processes, limits, and the sandbox around them."""
