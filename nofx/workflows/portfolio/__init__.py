"""The planner's scheduler: a portfolio of rules, an improvement step and CP-SAT, never worse
than its best member.

No single rule is strong on every DAG shape. Upward rank (critical path first) is right for
deep chains and wrong for wide levels of independent steps, where the problem is bin
packing and longest-first (LPT) wins; a look-ahead on the work a step unlocks helps fork-join
shapes; HEFT-style insertion fills idle gaps when pools of different sizes interleave. So
``plan`` runs them all, improves the best with iterated local search over priority lists
(with forward-backward justification), then hands the best to CP-SAT as a hint, and stops as
soon as a schedule meets the proven lower bound. The time budget grows with the DAG
(``budget_for``) and is reported with the result, as are every rule's makespan and which
member won.

Everything here is pure and deterministic for a seed except CP-SAT's wall-clock limit.
Durations are integer milliseconds inside (CP-SAT needs integers); results are seconds.
A step runs in one pool (``StepSpec.pool``) whose size is its number of workers; a step's
``resources`` (e.g. ``{"memory_gb": 4}``) count against ``capacities`` when one is given
for that resource, across all pools.

The package's modules, each importing only those before it: ``problem`` (the problem, a
solution, the lower bound), ``decoders`` (the rules and the schedule generation schemes),
``search`` (local search and CP-SAT) and ``runner`` (budget, ``solve``, ``plan``). Import
from ``nofx.workflows.portfolio``.
"""

from nofx.workflows.portfolio.decoders import justify, parallel_sgs, rules, serial_sgs
from nofx.workflows.portfolio.problem import (
    DEFAULT_POOL_SIZE,
    RESOURCE_SCALE,
    Problem,
    Solution,
    descendant_work,
    lower_bound,
    upward_ranks,
)
from nofx.workflows.portfolio.runner import (
    MAX_BUDGET_S,
    MAX_EXACT_STEPS,
    MAX_IMPROVED_STEPS,
    PortfolioResult,
    budget_for,
    plan,
    solve,
    to_schedule,
)
from nofx.workflows.portfolio.search import cp_sat, local_search

__all__ = [
    "DEFAULT_POOL_SIZE",
    "MAX_BUDGET_S",
    "MAX_EXACT_STEPS",
    "MAX_IMPROVED_STEPS",
    "RESOURCE_SCALE",
    "PortfolioResult",
    "Problem",
    "Solution",
    "budget_for",
    "cp_sat",
    "descendant_work",
    "justify",
    "local_search",
    "lower_bound",
    "parallel_sgs",
    "plan",
    "rules",
    "serial_sgs",
    "solve",
    "to_schedule",
    "upward_ranks",
]
