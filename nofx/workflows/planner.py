"""Plan generation: a goal and constraints in, a validated workflow out.

``BuiltinPlanner`` composes from the templates and the capability graph: it picks the
template whose words and capabilities best match the goal, replaces or drops steps whose
capability no agent offers (rewiring their dependants), adds a step for each required
capability the template lacks, and trims optional steps until the plan fits the budget and
deadline, or says which limit cannot be met and by how much. ``LLMPlanner`` asks any
OpenAI-compatible chat endpoint for a plan (off by default: ``NOFX_PLANNER=llm`` with
``NOFX_PLANNER_BASE_URL``, ``NOFX_PLANNER_MODEL``, ``NOFX_PLANNER_API_KEY``); its answer
is never trusted: unknown dependencies are dropped, each cycle broken at one edge (forward
references are fine), unknown capabilities mapped to the closest offered one of the same
domain, and what cannot be repaired is refused.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from nofx.errors import ValidationError
from nofx.settings import Settings
from nofx.workflows.analysis import analyze
from nofx.workflows.model import StepSpec, WorkflowSpec, validate
from nofx.workflows.templates import list_templates, load_template, template_parameters

WORD = re.compile(r"[a-z]+")


class PlanningError(ValidationError):
    code = "planning-failed"


@dataclass(frozen=True)
class PlanRequest:
    goal: str
    available_capabilities: frozenset[str]
    required_capabilities: tuple[str, ...] = ()
    budget_usd: float | None = None
    deadline_s: float | None = None
    notes: list[str] = field(default_factory=list, compare=False)


class Planner(Protocol):
    def plan(self, request: PlanRequest) -> WorkflowSpec: ...


def _params(template: str, goal: str) -> dict[str, str]:
    """Every parameter of a template filled with the goal: its text names what to do."""
    return dict.fromkeys(template_parameters(template), goal)


def _words(text: str) -> set[str]:
    return {w for w in WORD.findall(text.lower()) if len(w) > 2}


def _without(spec: WorkflowSpec, step_id: str) -> WorkflowSpec:
    """Drop a step; its dependants inherit its dependencies (and lose its inputs)."""
    gone = spec.step(step_id)
    steps = []
    for s in spec.steps:
        if s.id == step_id:
            continue
        if step_id in s.needs:
            needs = [d for d in s.needs if d != step_id] + [
                d for d in gone.needs if d not in s.needs
            ]
            inputs = {k: v for k, v in s.inputs.items() if not v.startswith(f"steps.{step_id}.")}
            s = s.model_copy(update={"needs": needs, "inputs": inputs})
        steps.append(s)
    return spec.model_copy(update={"steps": steps})


def nearest_capability(capability: str, available: frozenset[str]) -> str | None:
    """The offered capability of the same domain closest in spelling (``code.lint`` ->
    ``code.review`` over ``code.generate`` only if it is closer), if the domain has any."""
    domain = capability.split(".")[0]
    same = sorted(c for c in available if c.split(".")[0] == domain)
    if not same:
        return None
    close = difflib.get_close_matches(capability, same, n=1, cutoff=0.0)
    return close[0] if close else same[0]


def break_cycles(needs: dict[str, list[str]]) -> list[tuple[str, str]]:
    """Edges (step, dependency) to drop so that ``needs`` has no cycle: the back edges of a
    depth-first walk in declaration order. Forward references are kept when acyclic."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    dropped: list[tuple[str, str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        for dep in list(needs[node]):
            if state.get(dep) == 1:
                needs[node].remove(dep)
                dropped.append((node, dep))
            elif dep not in state:
                visit(dep)
        state[node] = 2

    for node in list(needs):
        if node not in state:
            visit(node)
    return dropped


def fit_to_agents(spec: WorkflowSpec, request: PlanRequest, notes: list[str]) -> WorkflowSpec:
    """Make every step's capability one an agent offers, or drop the step."""
    for step in list(spec.steps):
        if step.capability in request.available_capabilities:
            continue
        alternative = nearest_capability(step.capability, request.available_capabilities)
        if alternative is not None:
            notes.append(f"{step.id}: no agent offers {step.capability}; using {alternative}")
            spec = spec.model_copy(
                update={
                    "steps": [
                        s.model_copy(update={"capability": alternative}) if s.id == step.id else s
                        for s in spec.steps
                    ]
                }
            )
        elif len(spec.steps) > 1:
            notes.append(f"{step.id}: no agent offers {step.capability}; step dropped")
            spec = _without(spec, step.id)
    return spec


class BuiltinPlanner:
    def plan(self, request: PlanRequest) -> WorkflowSpec:
        goal = _words(request.goal)
        missing = sorted(set(request.required_capabilities) - request.available_capabilities)
        if missing:
            raise PlanningError(
                f"no agent offers the required capabilities {missing}",
                hint="register agents that offer them, or drop them from the request",
            )

        def fit(name: str) -> tuple[float, str]:
            spec = load_template(name, known_capabilities=None, **_params(name, request.goal))
            words = _words(f"{name} {spec.description} {' '.join(s.id for s in spec.steps)}")
            caps = {s.capability for s in spec.steps}
            covered = len(caps & set(request.required_capabilities))
            offered = len(caps & request.available_capabilities) / len(caps)
            return len(goal & words) + 2 * covered + offered, name

        _, best = max(fit(name) for name in list_templates())
        notes = request.notes
        notes.append(f"from template {best!r}")
        spec = load_template(best, known_capabilities=None, **_params(best, request.goal))
        spec = fit_to_agents(spec, request, notes)
        sinks = [s.id for s in spec.steps if not any(s.id in o.needs for o in spec.steps)]
        for capability in request.required_capabilities:
            if capability not in {s.capability for s in spec.steps}:
                step_id = capability.replace(".", "_")
                notes.append(f"{step_id}: added for the required capability {capability}")
                spec = spec.model_copy(
                    update={
                        "steps": [
                            *spec.steps,
                            StepSpec(
                                id=step_id,
                                capability=capability,
                                needs=sinks,
                                prompt=f"{capability} for: {request.goal}",
                            ),
                        ]
                    }
                )
        spec = self._within_limits(spec, request, notes)
        validate(spec, set(request.available_capabilities))
        return spec

    @staticmethod
    def _within_limits(spec: WorkflowSpec, request: PlanRequest, notes: list[str]) -> WorkflowSpec:
        required = set(request.required_capabilities)

        def over(s: WorkflowSpec) -> list[str]:
            a = analyze(s)
            problems = []
            if request.budget_usd is not None and a.estimated_cost_usd > request.budget_usd:
                problems.append(
                    f"estimated cost ${a.estimated_cost_usd:.2f} > budget ${request.budget_usd:.2f}"
                )
            if request.deadline_s is not None and a.critical_path_s > request.deadline_s:
                problems.append(
                    f"critical path {a.critical_path_s:.0f}s > deadline {request.deadline_s:.0f}s"
                )
            return problems

        while over(spec):
            optional = [s for s in spec.steps if s.capability not in required]
            if len(spec.steps) <= 1 or not optional:
                raise PlanningError(
                    "no plan fits: " + "; ".join(over(spec)),
                    hint="raise the budget or the deadline, or require fewer capabilities",
                )
            costliest = max(optional, key=lambda s: (s.estimates.cost_usd, s.estimates.duration_s))
            notes.append(f"{costliest.id}: dropped to fit the limits")
            spec = _without(spec, costliest.id)
        return spec


SYSTEM_PROMPT = """You plan work for a fleet of AI agents. Answer with one JSON object only:
{"name": str, "steps": [{"id": str, "capability": str, "needs": [step ids],
"prompt": str, "estimates": {"duration_s": number, "cost_usd": number}}]}.
Use only these capabilities: %s. Steps form a DAG (needs point to earlier steps)."""


def extract_json(text: str) -> dict[str, Any]:
    """The first JSON object in a model's answer (code fences and chatter around it allowed)."""
    start = text.find("{")
    if start < 0:
        raise PlanningError("the planner's answer holds no JSON object", hint="try again")
    try:
        value, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError as exc:
        raise PlanningError(f"the planner's answer is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise PlanningError("the planner's answer is not a JSON object")
    return value


def repair(raw: dict[str, Any], request: PlanRequest, notes: list[str]) -> WorkflowSpec:
    """Make a model's plan valid or refuse it: drop unknown dependencies, break cycles,
    map unknown capabilities to an offered one of the same domain."""
    steps = raw.get("steps")
    if not isinstance(steps, list) or not steps:
        raise PlanningError("the plan has no steps")
    clean: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, step in enumerate(steps):
        if not isinstance(step, dict) or not step.get("id") or not step.get("capability"):
            raise PlanningError(f"step {index + 1} lacks an id or a capability")
        step_id = str(step["id"])
        if step_id in seen:
            raise PlanningError(f"step id {step_id!r} appears twice")
        capability = str(step["capability"])
        if capability not in request.available_capabilities:
            mapped = nearest_capability(capability, request.available_capabilities)
            if mapped is None:
                raise PlanningError(
                    f"step {step_id!r} needs {capability!r}, which no agent offers",
                    hint="register such an agent or plan with the builtin planner",
                )
            notes.append(f"{step_id}: {capability} mapped to {mapped}")
            capability = mapped
        given = step.get("estimates")
        estimates: dict[str, Any] = given if isinstance(given, dict) else {}
        clean.append(
            {
                "id": step_id,
                "capability": capability,
                "needs": [str(d) for d in step.get("needs") or []],
                "prompt": str(step.get("prompt", "")),
                "estimates": {
                    k: v
                    for k, v in estimates.items()
                    if k in ("duration_s", "cost_usd", "tokens")
                    and isinstance(v, int | float)
                    and v >= 0
                },
            }
        )
        seen.add(step_id)
    for item in clean:  # dependencies on steps that do not exist
        for dropped in sorted(set(item["needs"]) - seen):
            notes.append(f"{item['id']}: dependency on unknown step {dropped!r} dropped")
        item["needs"] = [d for d in dict.fromkeys(item["needs"]) if d in seen]
    graph = {item["id"]: item["needs"] for item in clean}
    for step_id, dep in break_cycles(graph):  # one edge per cycle, not every later step
        notes.append(f"{step_id}: dependency on {dep!r} dropped to break a cycle")
    try:
        spec = WorkflowSpec.model_validate({"name": str(raw.get("name") or "plan"), "steps": clean})
    except Exception as exc:
        raise PlanningError(f"the repaired plan is still invalid: {exc}") from exc
    validate(spec, set(request.available_capabilities))
    return spec


class LLMPlanner:
    def __init__(self, base_url: str, model: str, api_key: str = "", timeout_s: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout_s = timeout_s

    def plan(self, request: PlanRequest) -> WorkflowSpec:
        body = {
            "model": self.model,
            "temperature": 0,
            "messages": [
                {
                    "role": "system",
                    "content": SYSTEM_PROMPT % ", ".join(sorted(request.available_capabilities)),
                },
                {
                    "role": "user",
                    "content": json.dumps(
                        {
                            "goal": request.goal,
                            "required_capabilities": list(request.required_capabilities),
                            "budget_usd": request.budget_usd,
                            "deadline_s": request.deadline_s,
                        }
                    ),
                },
            ],
        }
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            response = httpx.post(
                f"{self.base_url}/chat/completions",
                json=body,
                headers=headers,
                timeout=self.timeout_s,
            )
        except httpx.TimeoutException as exc:
            raise PlanningError(
                f"the planner at {self.base_url} did not answer within {self.timeout_s:g}s",
                hint="check the server or raise the timeout",
            ) from exc
        except httpx.HTTPError as exc:
            raise PlanningError(f"cannot reach the planner at {self.base_url}: {exc}") from exc
        if response.status_code != 200:
            raise PlanningError(
                f"the planner at {self.base_url} answered HTTP {response.status_code}",
                hint=response.text[:200],
            )
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise PlanningError("the planner's answer is not a chat completion") from exc
        notes = request.notes
        notes.append(f"planned by {self.model} at {self.base_url}")
        return BuiltinPlanner._within_limits(
            repair(extract_json(content), request, notes), request, notes
        )


def planner_from_env(env: dict[str, str] | None = None) -> Planner:
    """The planner of the settings ``env`` gives (the process's environment by default)."""
    return planner_from_settings(Settings.from_env(env))


def planner_from_settings(settings: Settings) -> Planner:
    """The builtin planner unless NOFX_PLANNER=llm (then NOFX_PLANNER_BASE_URL and _MODEL)."""
    if settings.planner != "llm":
        return BuiltinPlanner()
    base_url, model = settings.planner_base_url, settings.planner_model
    if not base_url or not model:
        raise PlanningError(
            "NOFX_PLANNER=llm needs NOFX_PLANNER_BASE_URL and NOFX_PLANNER_MODEL",
            hint="set both, or unset NOFX_PLANNER for the builtin planner",
        )
    return LLMPlanner(base_url, model, settings.planner_api_key)
