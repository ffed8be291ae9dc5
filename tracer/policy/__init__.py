"""Policies: the model, strict YAML loading, presets, and the pure decide().

The loader's names are imported on first use: the model and decide() serve
a run whose policy comes compiled from the cache, which needs no parser."""

from typing import Any

from tracer.policy.engine import decide
from tracer.policy.model import Action, Decision, Facts, Match, Policy, Rule

_LOADER_NAMES = ("load_policy_file", "load_policy_text", "preset_names", "resolve_policy")

__all__ = [
    "Action",
    "Decision",
    "Facts",
    "Match",
    "Policy",
    "Rule",
    "decide",
    "load_policy_file",
    "load_policy_text",
    "preset_names",
    "resolve_policy",
]


def __getattr__(name: str) -> Any:
    if name in _LOADER_NAMES:
        from tracer.policy import loader

        return getattr(loader, name)
    raise AttributeError(f"module 'tracer.policy' has no attribute {name!r}")
