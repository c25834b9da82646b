"""IterKD questions service."""
