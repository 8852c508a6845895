"""agents/sac."""
