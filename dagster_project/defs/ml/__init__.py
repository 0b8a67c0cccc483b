"""ML: the failure models, the session predictions, and the nightly retrain."""
