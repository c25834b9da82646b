"""IterKD torch kit: what only torch-carrying images (teacher[hf], trainer) install."""
