"""Executors: where a stage runs (this process, or a Kubernetes Job)."""
