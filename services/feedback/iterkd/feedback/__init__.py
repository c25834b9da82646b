"""IterKD feedback service."""
