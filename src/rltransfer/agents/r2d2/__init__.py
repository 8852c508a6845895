"""agents/r2d2."""
