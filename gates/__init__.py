"""gonogo gates."""
