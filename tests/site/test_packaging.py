"""`pip install .` installs aispm as a distribution: the apps, their migrations and
management commands, and the top-level templates/ and static/ inside aispm_site."""

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APPS = ["aispm_site", "agents", "approvals", "audit", "demo"]
ASSETS = {"templates": "aispm_site.templates", "static": "aispm_site.static"}


def _declared() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _checkout_packages() -> set[str]:
    packages = set()
    for app in APPS:
        for init in (ROOT / app).rglob("__init__.py"):
            packages.add(".".join(init.parent.relative_to(ROOT).parts))
    for folder, package in ASSETS.items():
        packages.add(package)
        for sub in (ROOT / folder).rglob("*"):
            if sub.is_dir() and sub.name != "__pycache__":
                packages.add(".".join([package, *sub.relative_to(ROOT / folder).parts]))
    return packages


def test_pyproject_declares_every_app_package_and_template_folder():
    assert set(_declared()["packages"]) == _checkout_packages()


def test_the_wheel_carries_apps_migrations_templates_and_static(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in [*APPS, *ASSETS]:
        shutil.copytree(ROOT / name, source / name, ignore=ignore)

    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path / "dist"), str(source)],
        check=True,
        capture_output=True,
    )

    (wheel,) = (tmp_path / "dist").glob("aispm-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "approvals/migrations/0001_initial.py" in names
    assert "agents/management/commands/issue_agent_key.py" in names
    assert "aispm_site/templates/base.html" in names
    assert "aispm_site/templates/approvals/inbox.html" in names
    assert "aispm_site/static/aispm.css" in names
    for template in (ROOT / "templates").rglob("*.html"):
        assert f"aispm_site/templates/{template.relative_to(ROOT / 'templates')}" in names
    assert not {name for name in names if name.startswith(("tests/", "bench/", "clients/"))}
