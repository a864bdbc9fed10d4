"""Benchmarks that start the service and measure it against floors taken in the same run."""
