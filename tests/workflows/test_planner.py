"""Plans from goals: the builtin planner on the templates, and an LLM planner against a
real local HTTP server speaking the OpenAI chat-completions protocol."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient

from nofx.api.app import create_app
from nofx.store import EventStore
from nofx.workflows.analysis import analyze
from nofx.workflows.planner import (
    BuiltinPlanner,
    LLMPlanner,
    PlanningError,
    PlanRequest,
    extract_json,
    planner_from_env,
)

CAPS = frozenset({"code.generate", "code.review", "test.write", "plan.decompose"})


def request(goal: str, **kw: object) -> PlanRequest:
    return PlanRequest(goal=goal, available_capabilities=CAPS, **kw)  # type: ignore[arg-type]


def test_the_goal_picks_the_template_and_the_fleet_shapes_it() -> None:
    asked = request("fix the login bug in the API")
    spec = BuiltinPlanner().plan(asked)
    assert {s.capability for s in spec.steps} <= CAPS
    assert "from template 'bugfix'" in asked.notes
    assert any("step dropped" in n or "using" in n for n in asked.notes)  # triage's search
    feature = BuiltinPlanner().plan(request("implement a CSV export feature with tests"))
    assert "test.write" in {s.capability for s in feature.steps}


def test_required_capabilities_are_added_and_missing_ones_refused() -> None:
    asked = request("research the market", required_capabilities=("test.write",))
    spec = BuiltinPlanner().plan(asked)
    assert "test.write" in {s.capability for s in spec.steps}
    with pytest.raises(PlanningError, match=r"sql\.write"):
        BuiltinPlanner().plan(request("anything", required_capabilities=("sql.write",)))


def test_limits_trim_optional_steps_or_say_which_cannot_be_met() -> None:
    free = BuiltinPlanner().plan(request("implement a feature"))
    budget = analyze(free).estimated_cost_usd * 0.6
    asked = request(
        "implement a feature", budget_usd=budget, required_capabilities=("code.generate",)
    )
    trimmed = BuiltinPlanner().plan(asked)
    assert analyze(trimmed).estimated_cost_usd <= budget
    assert any("dropped to fit the limits" in n for n in asked.notes)
    with pytest.raises(PlanningError, match="deadline"):
        BuiltinPlanner().plan(
            request("implement a feature", deadline_s=1, required_capabilities=("code.generate",))
        )


class ChatServer(BaseHTTPRequestHandler):
    """Answers /chat/completions with whatever the test put in ``reply``."""

    reply: tuple[int, str, float] = (200, "", 0.0)
    requests: list[dict] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ChatServer.requests.append(body)
        status, content, delay = ChatServer.reply
        time.sleep(delay)
        payload = {"choices": [{"message": {"role": "assistant", "content": content}}]}
        data = json.dumps(payload).encode() if status == 200 else b"upstream broke"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def chat() -> Iterator[str]:
    ChatServer.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), ChatServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def answer(plan: dict) -> str:
    return "Here is the plan:\n```json\n" + json.dumps(plan) + "\n```"


def test_a_valid_llm_plan_is_taken_and_the_request_is_well_formed(chat: str) -> None:
    ChatServer.reply = (
        200,
        answer(
            {
                "name": "fix",
                "steps": [
                    {"id": "plan", "capability": "plan.decompose"},
                    {"id": "code", "capability": "code.generate", "needs": ["plan"]},
                ],
            }
        ),
        0.0,
    )
    spec = LLMPlanner(chat, "local-model", api_key="k").plan(request("fix it"))
    assert [s.id for s in spec.steps] == ["plan", "code"]
    sent = ChatServer.requests[0]
    assert sent["model"] == "local-model" and sent["messages"][0]["role"] == "system"
    assert "code.review" in sent["messages"][0]["content"]


def test_a_broken_llm_plan_is_repaired_and_the_repairs_noted(chat: str) -> None:
    ChatServer.reply = (
        200,
        answer(
            {
                "steps": [
                    {"id": "a", "capability": "code.lint", "needs": ["b"]},  # cycle + mapped
                    {"id": "b", "capability": "code.generate", "needs": ["a", "ghost"]},
                ]
            }
        ),
        0.0,
    )
    asked = request("lint and fix")
    spec = LLMPlanner(chat, "m").plan(asked)
    # the cycle a -> b -> a loses one edge, the one the walk found closing it
    assert [(s.id, s.capability, s.needs) for s in spec.steps] == [
        ("a", "code.generate", ["b"]),
        ("b", "code.generate", []),
    ]
    assert any("mapped to" in n for n in asked.notes)
    assert any("unknown step 'ghost'" in n for n in asked.notes)
    assert any("to break a cycle" in n for n in asked.notes)


def test_forward_references_survive_and_only_one_edge_per_cycle_goes(chat: str) -> None:
    ChatServer.reply = (
        200,
        answer(
            {
                "steps": [
                    {"id": "review", "capability": "code.review", "needs": ["code"]},
                    {"id": "code", "capability": "code.generate", "needs": ["plan"]},
                    {"id": "plan", "capability": "plan.decompose"},
                ]
            }
        ),
        0.0,
    )
    asked = request("plan, code, review")
    spec = LLMPlanner(chat, "m").plan(asked)
    assert {s.id: s.needs for s in spec.steps} == {
        "review": ["code"],
        "code": ["plan"],
        "plan": [],
    }
    assert not any("dropped" in n for n in asked.notes)


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ((200, "I cannot help with that.", 0.0), "no JSON object"),
        ((200, answer({"steps": [{"id": "x", "capability": "sql.write"}]}), 0.0), "no agent"),
        ((200, answer({"steps": []}), 0.0), "no steps"),
        ((500, "", 0.0), "HTTP 500"),
        ((200, answer({"steps": [{"id": "x", "capability": "code.generate"}]}), 1.5), "within"),
    ],
)
def test_what_cannot_be_repaired_is_refused_clearly(chat: str, reply, message: str) -> None:
    ChatServer.reply = reply
    with pytest.raises(PlanningError, match=message):
        LLMPlanner(chat, "m", timeout_s=0.5).plan(request("do it"))


def test_extract_json_and_unreachable_servers() -> None:
    assert extract_json('noise {"a": 1} trailing') == {"a": 1}
    with pytest.raises(PlanningError, match="not valid JSON"):
        extract_json("{broken")
    with pytest.raises(PlanningError, match="cannot reach"):
        LLMPlanner("http://127.0.0.1:9", "m", timeout_s=1).plan(request("x"))


def test_the_planner_is_builtin_unless_configured() -> None:
    assert isinstance(planner_from_env({}), BuiltinPlanner)
    llm = planner_from_env(
        {"NOFX_PLANNER": "llm", "NOFX_PLANNER_BASE_URL": "http://x/v1", "NOFX_PLANNER_MODEL": "m"}
    )
    assert isinstance(llm, LLMPlanner) and llm.model == "m"
    with pytest.raises(PlanningError, match="NOFX_PLANNER_BASE_URL"):
        planner_from_env({"NOFX_PLANNER": "llm"})


def test_plan_over_http(store: EventStore, fleet) -> None:
    with TestClient(create_app(store=store, auth_required=False)) as client:
        planned = client.post(
            "/api/v1/workflows/plan",
            json={"goal": "fix the flaky review step", "required_capabilities": ["code.review"]},
        )
        assert planned.status_code == 200, planned.text
        body = planned.json()
        assert body["planner"] == "BuiltinPlanner" and body["notes"]
        caps = {s["capability"] for s in body["workflow"]["steps"]}
        assert caps <= {"code.generate", "code.review"}
        refused = client.post(
            "/api/v1/workflows/plan", json={"goal": "x y z", "required_capabilities": ["sql.write"]}
        )
        assert refused.status_code == 422 and refused.json()["type"].endswith("/planning-failed")
