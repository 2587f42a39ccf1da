"""Graph -> Graph transforms and the pass manager."""

from passes.manager import PassManager, get_pass, parse_pipeline, register_pass, registered_passes

__all__ = ["PassManager", "get_pass", "parse_pipeline", "register_pass", "registered_passes"]
