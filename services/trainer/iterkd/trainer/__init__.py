"""IterKD trainer service."""
