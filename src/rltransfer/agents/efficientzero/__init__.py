"""agents/efficientzero."""
