"""Training entry point (``train`` console script) for action-chunk policies."""
