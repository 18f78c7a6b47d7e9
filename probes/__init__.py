"""gonogo probes."""
