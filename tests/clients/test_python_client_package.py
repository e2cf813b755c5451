"""`python -m build` turns clients/python into a wheel that installs in a fresh venv."""

import shutil
import subprocess
import sys
import venv
from pathlib import Path

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "python"
SMOKE = """
import aispm_client, httpx, importlib.metadata, pathlib
client = aispm_client.Client("http://aispm.test", "aispm_k", transport=httpx.MockTransport(
    lambda request: httpx.Response(200, json={"version": 1, "instructions": "", "settings": {},
                                              "policy": [], "activated_at": None})))
assert client.behaviour().version == 1
assert (pathlib.Path(aispm_client.__file__).parent / "py.typed").exists()
# httpx, and nothing else at run time (pytest only under the "test" extra).
runtime = [r for r in importlib.metadata.requires("aispm-client") if "extra ==" not in r]
assert [r.split(">")[0].split("<")[0] for r in runtime] == ["httpx"], runtime
print(aispm_client.__version__)
"""


def test_the_client_builds_into_a_wheel_that_installs_in_a_fresh_venv(tmp_path):
    source = tmp_path / "client"
    shutil.copytree(
        CLIENT, source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "build", "dist")
    )
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(tmp_path / "dist"), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("aispm_client-*.whl")
    assert list((tmp_path / "dist").glob("aispm_client-*.tar.gz"))

    venv.create(tmp_path / "venv", with_pip=True)
    python = str(tmp_path / "venv" / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "--quiet", str(wheel)], check=True)
    smoke = subprocess.run(
        [python, "-c", SMOKE], check=True, capture_output=True, text=True, cwd=tmp_path
    )
    assert smoke.stdout.strip() == "0.1.0"
