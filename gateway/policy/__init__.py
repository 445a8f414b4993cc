"""The routing policy: models, loading and validation, the decision engine, the live service.

models    frozen pydantic models: Psap, Destination, Window, Match, Rule, Policy,
          PolicyDocument; the safety invariant of one policy
loader    load_config_dir / validate_document → PolicyDocument, or PolicyInvalid with
          every error as {path, message}
engine    decide / explain: a pure function of (document, request, instant, load)
service   PolicyService: the live, versioned policy in Redis (If-Match, rollback,
          the policy.changed hook)
changes   what changed between two documents, path: old → new
cli       ``python -m gateway rules check|explain``
"""

from gateway.policy.engine import Explained, UnknownPsap, decide, explain
from gateway.policy.loader import PolicyInvalid, load_config_dir, validate_document
from gateway.policy.models import (
    MANDATORY_EXCLUSIONS,
    Destination,
    Match,
    Policy,
    PolicyDocument,
    Psap,
    Rule,
    Window,
)
from gateway.policy.service import (
    ChangeListener,
    LoadedPolicy,
    PolicyChange,
    PolicyService,
    VersionInfo,
    VersionMismatch,
)

__all__ = [
    "MANDATORY_EXCLUSIONS",
    "ChangeListener",
    "Destination",
    "Explained",
    "LoadedPolicy",
    "Match",
    "Policy",
    "PolicyChange",
    "PolicyDocument",
    "PolicyInvalid",
    "PolicyService",
    "Psap",
    "Rule",
    "UnknownPsap",
    "VersionInfo",
    "VersionMismatch",
    "Window",
    "decide",
    "explain",
    "load_config_dir",
    "validate_document",
]
