"""gonogo app."""
