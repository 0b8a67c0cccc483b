"""Workflows: DAGs of agent steps; parse and validate, import real traces, analyse."""

from nofx.workflows.analysis import Analysis, analyze, topological_order
from nofx.workflows.model import StepSpec, WorkflowSpec, find_cycle, parse_workflow, validate
from nofx.workflows.scheduler import Schedule, schedule, upward_rank
from nofx.workflows.templates import list_templates, load_template, template_parameters
from nofx.workflows.wfformat import load_wfformat

__all__ = [
    "Analysis",
    "Schedule",
    "StepSpec",
    "WorkflowSpec",
    "analyze",
    "find_cycle",
    "list_templates",
    "load_template",
    "load_wfformat",
    "parse_workflow",
    "schedule",
    "template_parameters",
    "topological_order",
    "upward_rank",
    "validate",
]
