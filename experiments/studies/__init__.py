"""One-off studies that measure something beyond the grid: the oracle (each backend against the float64
reference), the initialisation study and the speed benchmarks."""
