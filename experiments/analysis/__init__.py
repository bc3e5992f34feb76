"""Analysing and reporting: the report, its plots and statistics, read from run records and stored figures.
Framework-free: imports common only, never a backend or a runner."""
