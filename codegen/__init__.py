"""Code generators: one renderer per target."""
