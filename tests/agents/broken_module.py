"""A module that fails while importing, for the PythonProvider's error path."""

raise RuntimeError("this module is broken on purpose")
