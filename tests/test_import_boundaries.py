"""api/ and worker/ never import each other; models/ stays light; the gateway never needs torch."""

import subprocess
import sys
from pathlib import Path

from tests.services import REPO_ROOT


def test_import_contracts_hold() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports")], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 3 kept, 0 broken." in result.stdout


def test_the_gateway_app_loads_without_torch() -> None:
    code = "import sys, api.main, api.relay; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)
