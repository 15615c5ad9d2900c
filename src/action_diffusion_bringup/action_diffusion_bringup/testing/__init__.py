"""Test-only helpers: stand-ins of the stock robot drivers (never used by a real bringup)."""
