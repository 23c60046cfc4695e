"""Wire formats and their translation to and from engine requests."""
