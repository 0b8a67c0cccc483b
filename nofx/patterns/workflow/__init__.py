"""The ``workflow`` pattern: a workflow's DAG run inside a session as the portfolio planned it
(``run``), with what the run keeps track of (``progress``)."""

from nofx.patterns.workflow.progress import (
    LATE_TOLERANCE,
    executed_makespan_s,
    is_late,
    realised_makespan_s,
    render_prompt,
)
from nofx.patterns.workflow.run import POOL_LIMIT, run_workflow

__all__ = [
    "LATE_TOLERANCE",
    "POOL_LIMIT",
    "executed_makespan_s",
    "is_late",
    "realised_makespan_s",
    "render_prompt",
    "run_workflow",
]
