"""Asset, check, sensor and job definitions, one module per concern."""
