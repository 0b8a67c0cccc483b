"""Every guide's runnable commands run: each ```bash runnable block of a guide, in order,
in one bash with `set -euo pipefail`, a fresh NOFX_HOME and a working directory that
mirrors the repository root (new files land there, not in the checkout)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GUIDES = REPO / "docs" / "guides"
BLOCK = re.compile(r"^```bash runnable( postgres)?\n(.*?)^```$", re.S | re.M)


def runnable_blocks(text: str) -> list[tuple[bool, str]]:
    """(needs PostgreSQL, commands) of every runnable block, in the order written."""
    return [(bool(m.group(1)), m.group(2)) for m in BLOCK.finditer(text)]


def test_blocks_are_found_in_order_with_their_needs() -> None:
    text = (
        "intro\n```bash\nnot run\n```\n```bash runnable\necho one\n```\n"
        "```bash runnable postgres\necho two\n```\n```python\nx = 1\n```\n"
    )
    assert runnable_blocks(text) == [(False, "echo one\n"), (True, "echo two\n")]


GUIDE_FILES = sorted(p.name for p in GUIDES.glob("*.md") if p.name != "README.md")


def test_every_guide_the_issue_asks_for_exists_and_has_runnable_commands() -> None:
    assert set(GUIDE_FILES) >= {
        "getting-started.md",
        "patterns.md",
        "templates.md",
        "dashboards.md",
        "integrations.md",
        "postgresql.md",
        "dagster-production.md",
    }
    for name in GUIDE_FILES:
        assert runnable_blocks((GUIDES / name).read_text()), f"{name} has no runnable block"


def test_every_image_a_guide_shows_is_committed_and_small() -> None:
    for name in GUIDE_FILES:
        for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (GUIDES / name).read_text()):
            image = GUIDES / target
            assert image.is_file(), f"{name} shows {target}, which is missing"
            assert image.stat().st_size < 300_000, f"{target} is too big for git"


def mirror_of_the_repository(root: Path) -> None:
    """Symlinks to the repository's top-level entries, so `deploy/...` and friends resolve."""
    root.mkdir(parents=True, exist_ok=True)
    for entry in REPO.iterdir():
        if entry.name in (".nofx", ".git", ".venv", "tests") or entry.name.startswith("."):
            continue
        (root / entry.name).symlink_to(entry)


@pytest.mark.slow
@pytest.mark.parametrize("name", GUIDE_FILES)
def test_the_guides_commands_run(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    blocks = runnable_blocks((GUIDES / name).read_text())
    needs_postgres = any(needs_pg for needs_pg, _ in blocks)
    # a fresh database of its own (skips, with the reason, when there is no server)
    postgres = request.getfixturevalue("pg_url") if needs_postgres else None
    wanted = [code for needs_pg, code in blocks if postgres or not needs_pg]
    work = tmp_path / "checkout"
    mirror_of_the_repository(work)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NOFX_", "DAGSTER_", "MLFLOW_")) or k == "NOFX_TEST_POSTGRES_URL"
    }
    env.update(
        NOFX_HOME=str(tmp_path / "home"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(REPO),  # this checkout's nofx, whatever the venv has installed
        **({"PG": postgres} if postgres else {}),
    )
    script = "set -euo pipefail\n" + "\n".join(wanted)
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, (
        f"{name}: a command failed (exit {done.returncode})\n"
        f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
    )
