"""Ready-made reproductions of the thesis's experiments."""
