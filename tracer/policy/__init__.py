"""Policies: the model, strict YAML loading, presets, and the pure decide()."""

from tracer.policy.engine import decide
from tracer.policy.loader import load_policy_file, load_policy_text, preset_names, resolve_policy
from tracer.policy.model import Action, Decision, Facts, Match, Policy, Rule

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
