"""The resources every definition uses, configured from nofx Settings when the definitions
load (``lib.resources.build_resources``)."""

import dagster as dg

from dagster_project.lib.resources import build_resources


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=build_resources())
