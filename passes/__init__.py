"""Graph -> Graph transforms and the pass manager."""
