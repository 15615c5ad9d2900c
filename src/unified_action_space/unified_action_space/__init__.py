"""RDT's physically interpretable 128-slot unified action space: layout, robot embodiments, state/command mapping and the unified state node."""
