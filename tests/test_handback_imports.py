"""Every gateway module imports on its own, first, in a fresh interpreter: no import cycle hides
behind the order in which the app happens to import things (``gateway.handback.eido`` ↔
``gateway.handback``)."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(
    ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    for path in (ROOT / "gateway").rglob("*.py")
    if path.name != "__main__.py"
)


def import_error(module: str) -> str | None:
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return None if result.returncode == 0 else f"{module}: {result.stderr.strip()[-400:]}"


def test_each_gateway_module_imports_first_in_a_fresh_interpreter() -> None:
    assert {"gateway.handback.eido", "gateway.handback", "gateway.handback.service"} <= set(MODULES)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 2)) as pool:
        errors = [e for e in pool.map(import_error, MODULES) if e is not None]
    assert errors == []
