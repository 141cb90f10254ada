"""The server side of a run: the round loop, who takes part each round, the backend that runs the clients."""
