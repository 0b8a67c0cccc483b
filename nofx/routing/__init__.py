"""Choosing agents: capability matching, scoring, learned estimates, breakers, scaling, retries."""
