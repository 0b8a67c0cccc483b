"""Checks on the dbt marts beyond dbt's own tests: Great Expectations before training."""

import dagster as dg
import great_expectations.expectations as gxe

from dagster_project.lib.expectations import check_result, validate
from dagster_project.lib.resources import WarehouseResource


def agent_sessions_suite(agent_ids: list[str]) -> list[gxe.Expectation]:
    """One row per session, a boolean outcome, no negative cost, agents that exist."""
    return [
        gxe.ExpectColumnValuesToBeUnique(column="session_id"),
        gxe.ExpectColumnValuesToNotBeNull(column="session_id"),
        gxe.ExpectColumnValuesToNotBeNull(column="succeeded"),
        gxe.ExpectColumnValuesToBeInSet(column="succeeded", value_set=[True, False]),
        gxe.ExpectColumnValuesToBeBetween(column="cost_usd", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="attempts", min_value=0),
        # nulls are skipped by column-map expectations: a session with no agent yet is fine
        gxe.ExpectColumnValuesToBeInSet(column="agent_id", value_set=agent_ids),
    ]


@dg.asset_check(
    asset="agent_sessions",
    blocking=True,
    description="Great Expectations: unique sessions, boolean outcome, cost >= 0, and every "
    "agent_id present in the agents mart. Blocks model training when it fails.",
)
def agent_sessions_valid(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connect(read_only=True) as conn:
        sessions = conn.sql("select * from agent_sessions").pl()
        agent_ids = [row[0] for row in conn.execute("select agent_id from agents").fetchall()]
    return check_result(
        validate(sessions, agent_sessions_suite(agent_ids), "agent_sessions"),
        agents=len(agent_ids),
    )
