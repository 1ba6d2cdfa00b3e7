"""The `course` command line: Typer commands and what they print."""
