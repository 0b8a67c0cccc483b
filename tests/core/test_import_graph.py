"""No import cycle between the modules of nofx (ADR 0019).

import-linter's ``acyclic_siblings`` contract (``make lint``) looks at sibling packages; it
does not see a package's ``__init__`` importing a child that imports the package back. This
test looks at every module, call-time and ``TYPE_CHECKING`` imports included, and names the
modules of each cycle it finds.
"""

from __future__ import annotations

import grimp
import pytest

# Cycles that predate ADR 0019, in code other work of issue #15 owns; each is named so that
# no new one can hide behind it. Remove an entry once its cycle is gone.
KNOWN_CYCLES = {
    # the writer names the store's Transaction in its types and builds one per commit group
    frozenset({"nofx.store.event_store", "nofx.store.writer"}),
}


def import_cycles(graph: grimp.ImportGraph, package: str) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted:
    every module of one can reach every other, so each holds at least one cycle."""
    modules = sorted(m for m in graph.modules if m == package or m.startswith(f"{package}."))
    inside = set(modules)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(root: str) -> None:  # iterative: a deep import chain must not hit the limit
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root) & inside)))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            advanced = False
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    imported = graph.find_modules_directly_imported_by(nxt) & inside
                    work.append((nxt, iter(sorted(imported))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))

    for module in modules:
        if module not in index:
            visit(module)
    return sorted(found)


def one_cycle(graph: grimp.ImportGraph, component: list[str]) -> list[str]:
    """A concrete cycle through the component's first module, for the failure message (a
    chain between two modules of a component never leaves it)."""
    start = component[0]
    for other in component[1:]:
        there = graph.find_shortest_chain(importer=start, imported=other)
        back = graph.find_shortest_chain(importer=other, imported=start)
        if there and back:
            return [*there, *back[1:]]
    return component  # pragma: no cover - every module of a component reaches the others


@pytest.fixture(scope="module")
def nofx_graph() -> grimp.ImportGraph:
    return grimp.build_graph("nofx", cache_dir=None)


def test_no_module_of_nofx_is_in_an_import_cycle(nofx_graph: grimp.ImportGraph) -> None:
    cycles = [c for c in import_cycles(nofx_graph, "nofx") if frozenset(c) not in KNOWN_CYCLES]
    assert not cycles, "import cycles in nofx:\n" + "\n".join(
        " -> ".join(one_cycle(nofx_graph, c)) for c in cycles
    )


def test_runtime_and_patterns_meet_only_in_the_contract(nofx_graph: grimp.ImportGraph) -> None:
    """The cycle ADR 0019 broke: patterns import ``nofx.execution``, never the runtime; the
    engine imports no pattern (``nofx.runtime``'s ``__init__`` registers them)."""
    for pattern in nofx_graph.find_descendants("nofx.patterns"):
        runtime = {
            m for m in nofx_graph.find_upstream_modules(pattern) if m.startswith("nofx.runtime")
        }
        assert not runtime, f"{pattern} depends on {sorted(runtime)}"
    for part in ("engine", "session", "calls", "leases", "config"):
        upstream = nofx_graph.find_upstream_modules(f"nofx.runtime.{part}")
        assert not {m for m in upstream if m.startswith("nofx.patterns")}, part


def test_the_check_finds_a_cycle_and_names_it() -> None:
    graph = grimp.ImportGraph()
    for module in ("pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.d"):
        graph.add_module(module)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.c")
    graph.add_import(importer="pkg.c", imported="pkg.a")
    graph.add_import(importer="pkg.c", imported="pkg.d")  # d is reached, not in the cycle
    graph.add_import(importer="pkg", imported="pkg.d")
    assert import_cycles(graph, "pkg") == [["pkg.a", "pkg.b", "pkg.c"]]
    assert one_cycle(graph, ["pkg.a", "pkg.b", "pkg.c"]) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]
    graph.remove_import(importer="pkg.c", imported="pkg.a")
    assert import_cycles(graph, "pkg") == []


def test_a_package_and_its_child_importing_each_other_is_a_cycle() -> None:
    """What acyclic_siblings misses: ``pkg/__init__`` and ``pkg.child`` importing each other."""
    graph = grimp.ImportGraph()
    for module in ("pkg", "pkg.child"):
        graph.add_module(module)
    graph.add_import(importer="pkg", imported="pkg.child")
    graph.add_import(importer="pkg.child", imported="pkg")
    assert import_cycles(graph, "pkg") == [["pkg", "pkg.child"]]
