"""Running the grid: one run (train, record, checkpoint, resume), the scheduler and its executors, and the blog post's
own scripts as reference runs. Imports common and backends only."""
