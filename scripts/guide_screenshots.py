"""Copy the browser test's dashboard screenshots into docs/guides/img as small PNGs.

Run after `pytest tests/dashboards/test_up_browser.py` (which writes
tests/artifacts/screenshots/up-<page>.png):  python scripts/guide_screenshots.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHOTS = REPO / "tests" / "artifacts" / "screenshots"
IMG = REPO / "docs" / "guides" / "img"
PAGES = ("overview", "agents", "workflows", "predictions", "cost", "alerts")
WIDTH = 900  # readable in a guide, small in git


def shrink(source: Path, target: Path, width: int = WIDTH) -> int:
    """Resize to ``width`` and store with a 128-colour palette; returns the bytes written."""
    with Image.open(source) as image:
        height = round(image.height * width / image.width)
        small = image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
        small.quantize(colors=128).save(target, optimize=True)
    return target.stat().st_size


def main() -> int:
    IMG.mkdir(parents=True, exist_ok=True)
    missing = [p for p in PAGES if not (SHOTS / f"up-{p}.png").exists()]
    if missing:
        print(f"run tests/dashboards/test_up_browser.py first; missing: {missing}", file=sys.stderr)
        return 1
    for page in PAGES:
        size = shrink(SHOTS / f"up-{page}.png", IMG / f"{page}.png")
        print(f"docs/guides/img/{page}.png {size // 1024} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
