"""Each server process loads the URLconf and the views as it starts, not in a request."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import sys
import aispm_site.wsgi
print("approvals.api.decisions" in sys.modules, "approvals.invisible" in sys.modules)
"""


def test_importing_the_wsgi_application_loads_the_api_views():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env={"DJANGO_SETTINGS_MODULE": "aispm_site.settings", "DEBUG": "true", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]
