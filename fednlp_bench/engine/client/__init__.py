"""One client's side: its model, data and trainer (setup), local training, the procedure host, its saved state."""
