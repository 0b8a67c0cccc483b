"""The template library: parameterised workflow YAML files shipped in nofx/workflows/templates/."""

from __future__ import annotations

import re
from pathlib import Path

from nofx.errors import NotFoundError, ValidationError
from nofx.workflows.model import WorkflowSpec, parse_workflow

TEMPLATE_DIR = Path(__file__).parent / "templates"
PLACEHOLDER = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")


def list_templates() -> list[str]:
    return sorted(p.stem for p in TEMPLATE_DIR.glob("*.yaml"))


def template_parameters(name: str) -> list[str]:
    return sorted(set(PLACEHOLDER.findall(_read(name))))


def _read(name: str) -> str:
    path = TEMPLATE_DIR / f"{name}.yaml"
    if not path.exists():
        raise NotFoundError(
            f"no workflow template {name!r}", hint="known: " + ", ".join(list_templates())
        )
    return path.read_text()


def load_template(
    name: str, *, known_capabilities: set[str] | None = None, **params: str
) -> WorkflowSpec:
    """Fill every ``{{ param }}`` and parse; a missing parameter is an error that names it."""
    text = _read(name)
    missing = sorted(set(PLACEHOLDER.findall(text)) - params.keys())
    if missing:
        raise ValidationError(f"template {name!r} needs parameters: {', '.join(missing)}")
    filled = PLACEHOLDER.sub(lambda m: str(params[m.group(1)]).replace('"', "'"), text)
    return parse_workflow(filled, fmt="yaml", known_capabilities=known_capabilities)
