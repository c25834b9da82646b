"""IterKD shared library."""
