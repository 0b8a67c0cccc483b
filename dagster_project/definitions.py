"""The root: every asset, check, job, sensor, schedule and resource, loaded from ``defs/``.

Each area folder (``defs/<area>/{assets,checks,sensors,schedules}.py``) is picked up by
``dg.load_from_defs_folder``; nothing is listed here. Lazy (``@dg.definitions``): dbt is
parsed and the store read only when Dagster loads the definitions.
"""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
