"""Executing compiled graphs: backends, sessions holding parameters and optimizer state."""
