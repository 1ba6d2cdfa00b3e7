"""What the runner keeps and does for a student: progress, backups and reset, watch, open, next, doctor."""
