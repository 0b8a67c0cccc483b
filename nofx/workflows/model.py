"""Workflows as data: a DAG of agent steps, readable from YAML or JSON, validated with messages that
name the step and, for YAML, the line."""

from __future__ import annotations

import difflib
import json
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import ValidationError as PydanticValidationError

from nofx.domain import Capability, PatternName
from nofx.errors import ValidationError


class Estimates(BaseModel):
    model_config = ConfigDict(extra="forbid")

    duration_s: float = Field(default=60.0, ge=0)
    tokens: int = Field(default=1000, ge=0)
    cost_usd: float = Field(default=0.0, ge=0)


class StepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=120, pattern=r"^[A-Za-z0-9_.\-]+$")
    capability: str
    needs: list[str] = Field(default_factory=list, description="steps that must finish first")
    inputs: dict[str, str] = Field(
        default_factory=dict, description="name -> 'steps.<id>.output' or 'params.<name>'"
    )
    prompt: str = ""
    estimates: Estimates = Field(default_factory=Estimates)
    pool: str = Field(
        default="default",
        max_length=60,
        description="the resource pool whose concurrency limit applies",
    )
    resources: dict[str, float] = Field(default_factory=dict, description="e.g. {memory_gb: 4}")
    max_attempts: int = Field(default=3, ge=1, le=10)
    priority: int = Field(
        default=0,
        ge=-100,
        le=100,
        description="higher starts first among ready steps of a pool; ties by critical path",
    )
    condition: str | None = None
    pattern: PatternName = PatternName.SOLO

    @field_validator("capability")
    @classmethod
    def _capability(cls, value: str) -> str:
        return Capability(name=value).name


class WorkflowSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    steps: list[StepSpec] = Field(min_length=1)

    def step(self, step_id: str) -> StepSpec:
        return next(s for s in self.steps if s.id == step_id)


def _step_lines(text: str) -> dict[str, int]:
    """Line (1-based) of each step's ``id`` in a YAML document, for error messages."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    lines: dict[str, int] = {}
    if not isinstance(root, yaml.MappingNode):
        return lines
    for key, value in root.value:
        if key.value == "steps" and isinstance(value, yaml.SequenceNode):
            for item in value.value:
                if isinstance(item, yaml.MappingNode):
                    for k, v in item.value:
                        if k.value == "id" and isinstance(v, yaml.ScalarNode):
                            lines[v.value] = v.start_mark.line + 1
    return lines


def find_cycle(spec: WorkflowSpec) -> list[str] | None:
    """A cycle as a list of step ids (first == last), or None."""
    graph = {s.id: list(s.needs) for s in spec.steps}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in graph.get(node, []):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep in graph and state.get(dep) is None:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in graph:
        if state.get(node) is None:
            found = visit(node)
            if found:
                return found
    return None


def validate(
    spec: WorkflowSpec,
    known_capabilities: set[str] | None = None,
    lines: dict[str, int] | None = None,
) -> None:
    """Refuse duplicate ids, unknown dependencies, cycles, unknown capabilities, unbound inputs."""
    lines = lines or {}

    def where(step_id: str) -> str:
        return f"step {step_id!r}" + (f" (line {lines[step_id]})" if step_id in lines else "")

    ids = [s.id for s in spec.steps]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValidationError(f"step ids must be unique; repeated: {', '.join(dupes)}")
    known_ids = set(ids)
    for step in spec.steps:
        for dep in step.needs:
            if dep not in known_ids:
                close = difflib.get_close_matches(dep, sorted(known_ids), n=1)
                hint = (
                    f"did you mean {close[0]!r}?" if close else "list an existing step id in needs"
                )
                raise ValidationError(f"{where(step.id)} needs unknown step {dep!r}", hint=hint)
        if known_capabilities is not None and step.capability not in known_capabilities:
            close = difflib.get_close_matches(step.capability, sorted(known_capabilities), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "register an agent that offers it"
            raise ValidationError(
                f"{where(step.id)} needs capability {step.capability!r}, which no agent offers",
                hint=hint,
            )
        for name, source in step.inputs.items():
            kind, _, rest = source.partition(".")
            if kind == "params" and rest in spec.params:
                continue
            if kind == "steps":
                upstream = rest.split(".")[0]
                if upstream in step.needs:
                    continue
                raise ValidationError(
                    f"{where(step.id)} input {name!r} reads {source!r}, but {upstream!r} is not in its needs",
                    hint=f"add {upstream!r} to needs so its output exists in time",
                )
            raise ValidationError(
                f"{where(step.id)} input {name!r} is bound to {source!r}, which does not exist",
                hint="use 'steps.<id>.output' or 'params.<name>' with a declared parameter",
            )
    cycle = find_cycle(spec)
    if cycle:
        raise ValidationError(
            "the workflow has a cycle: " + " -> ".join(cycle),
            hint=f"remove one dependency in {where(cycle[0])}",
        )


def parse_workflow(
    source: str | dict[str, Any],
    *,
    fmt: Literal["yaml", "json", "auto"] = "auto",
    known_capabilities: set[str] | None = None,
) -> WorkflowSpec:
    """Read and validate a workflow; every refusal says where and what to do."""
    lines: dict[str, int] = {}
    if isinstance(source, str):
        try:
            data = json.loads(source) if fmt == "json" else yaml.safe_load(source)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise ValidationError(
                f"the workflow is not valid {fmt.upper() if fmt != 'auto' else 'YAML/JSON'}: {exc}"
            ) from exc
        if fmt != "json":
            lines = _step_lines(source)
    else:
        data = source
    try:
        spec = WorkflowSpec.model_validate(data)
    except PydanticValidationError as exc:
        problems = []
        for e in exc.errors():
            loc = list(e["loc"])
            text = ".".join(map(str, loc))
            if (
                len(loc) >= 2
                and loc[0] == "steps"
                and isinstance(loc[1], int)
                and isinstance(data, dict)
            ):
                try:
                    step_id = data["steps"][loc[1]].get("id", f"#{loc[1] + 1}")
                except (AttributeError, IndexError, KeyError, TypeError):
                    step_id = f"#{loc[1] + 1}"
                text = (
                    f"step {step_id!r}"
                    + (f" (line {lines[step_id]})" if step_id in lines else "")
                    + " "
                    + ".".join(map(str, loc[2:]))
                )
            problems.append(f"{text}: {e['msg']}")
        raise ValidationError("the workflow is not valid: " + "; ".join(problems)) from exc
    validate(spec, known_capabilities, lines)
    return spec
