"""Every asset, check, job, sensor and schedule, one folder per area; ``definitions.py``
loads them from this folder (``dg.load_from_defs_folder``)."""
