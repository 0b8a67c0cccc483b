"""Import real workflow traces in WfFormat (WfCommons) as workflows with measured durations."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from nofx.errors import ValidationError
from nofx.workflows.model import WorkflowSpec, parse_workflow


def _capability(task: dict[str, Any]) -> str:
    """``wf.<program>``: the task's program (or its name without the numeric suffix), sanitised."""
    program = (
        (task.get("command") or {}).get("program")
        if isinstance(task.get("command"), dict)
        else None
    )
    base = program or re.sub(r"[_\-]?\d+$", "", task.get("name") or task["id"])
    base = re.sub(r"[^a-z0-9_]+", "_", Path(base).name.lower()).strip("_") or "task"
    if not base[0].isalpha():
        base = "t_" + base
    return f"wf.{base}"


def load_wfformat(path: str | Path) -> WorkflowSpec:
    """A WfFormat 1.5 instance as a workflow: one step per task, runtimeInSeconds as its duration."""
    data = json.loads(Path(path).read_text())
    try:
        spec_tasks = data["workflow"]["specification"]["tasks"]
        runtimes = {
            t["id"]: float(t.get("runtimeInSeconds", 0.0))
            for t in data["workflow"]["execution"]["tasks"]
        }
    except (KeyError, TypeError) as exc:
        raise ValidationError(f"{path} is not a WfFormat 1.5 instance (missing {exc})") from exc
    steps = [
        {
            "id": task["id"],
            "capability": _capability(task),
            "needs": list(task.get("parents", [])),
            "estimates": {"duration_s": runtimes.get(task["id"], 0.0)},
        }
        for task in spec_tasks
    ]
    return parse_workflow(
        {
            "name": data.get("name", Path(path).stem),
            "description": data.get("description", ""),
            "steps": steps,
        }
    )
