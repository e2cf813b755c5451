"""The import contracts in pyproject.toml cover every module of every app.

lint-imports checks only the modules a contract names, so a module that is neither in
the domain-direction layers nor in an interface package would escape both contracts.
"""

import pkgutil
import tomllib
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
APPS = ["agents", "approvals", "audit"]


def contracts() -> dict[str, dict]:
    with (PROJECT_ROOT / "pyproject.toml").open("rb") as file:
        config = tomllib.load(file)["tool"]["importlinter"]
    return {contract["id"]: contract for contract in config["contracts"]}


def app_modules(app: str, root: Path = PROJECT_ROOT) -> set[str]:
    return {f"{app}.{module.name}" for module in pkgutil.iter_modules([str(root / app)])}


def classified() -> set[str]:
    domain = {
        name.strip()
        for layer in contracts()["domain-direction"]["layers"]
        for name in layer.split(":")
    }
    return domain | set(contracts()["interfaces"]["protected_modules"])


def test_every_module_of_every_app_is_domain_or_interface():
    unclassified = {module for app in APPS for module in app_modules(app)} - classified()
    assert not unclassified, (
        f"{sorted(unclassified)}: add each to its app's domain layer or to the interface "
        "packages in pyproject.toml's [tool.importlinter]"
    )


def test_the_check_sees_a_module_the_contracts_do_not_name(tmp_path):
    (tmp_path / "audit").mkdir()
    (tmp_path / "audit" / "models.py").touch()
    (tmp_path / "audit" / "unlisted_module.py").touch()
    assert app_modules("audit", tmp_path) - classified() == {"audit.unlisted_module"}
