"""Grading a class: submissions in, one result per student out, exported for each platform."""
