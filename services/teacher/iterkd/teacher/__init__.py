"""IterKD teacher service."""
