"""Sessions: run requested sessions with the nofx runtime."""
