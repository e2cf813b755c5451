"""Declarative governance config: load, validate and apply a YAML file.

The format is the one in DESIGN.md ("Configuration and runtime"). The whole file
is checked before anything is written, then applied in one transaction through
the agents services, so a file lands completely or not at all. Applying the same
file twice changes nothing.

Use ``apply_governance_file(path)`` from code; it raises ``GovernanceInvalid``
with one line per problem, each naming the file and the path inside it.
"""

from .apply import ACTOR, GovernanceResult, apply_governance, apply_governance_file
from .load import GOVERNANCE_MAX_DEPTH, load_governance_file
from .schema import FILE_SCHEMA, GovernanceInvalid, validate_governance

__all__ = [
    "ACTOR",
    "FILE_SCHEMA",
    "GOVERNANCE_MAX_DEPTH",
    "GovernanceInvalid",
    "GovernanceResult",
    "apply_governance",
    "apply_governance_file",
    "load_governance_file",
    "validate_governance",
]
