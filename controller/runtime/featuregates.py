"""Feature gates as Kubernetes components take them: ``--feature-gates=Name=true,Other=false``.

Each known gate has a default and may name an environment variable that sets it (Cluster API's
manifests feed ``--feature-gates=MachinePool=${EXP_MACHINE_POOL:=true}``). Precedence, highest
first: the gate named in ``--feature-gates``, then its environment variable, then its default.
So a flag always wins, and an unset or empty variable means the default.

Failure: :func:`resolve` raises :class:`FeatureGateError` naming the offending entry for an
unknown gate, a value other than ``true``/``false`` (any case), a malformed entry or a gate
given twice; and for an environment variable whose value is not a boolean. Nothing is
silently ignored, as in component-base.

Invariants: the result has exactly one value per known gate; this module knows no gate by
name (callers pass the table), so it stays generic runtime machinery.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

__all__ = ["FeatureGate", "FeatureGateError", "FeatureGates", "resolve"]


class FeatureGateError(ValueError):
    """A feature gate setting cannot be used; the message names it."""


@dataclass(frozen=True, slots=True)
class FeatureGate:
    """One gate: its default, maturity and the environment variable that may set it."""

    default: bool
    stage: Literal["Alpha", "Beta", "GA"] = "Beta"
    env: str | None = None


@dataclass(frozen=True, slots=True)
class FeatureGates:
    """The resolved gates, and where each value came from (for the start-up log)."""

    values: Mapping[str, bool]
    sources: Mapping[str, str]

    def enabled(self, name: str) -> bool:
        """Whether gate ``name`` is on; KeyError for a gate that is not known."""
        return self.values[name]

    def describe(self) -> str:
        """``MachinePool=false (from EXP_MACHINE_POOL)``, one entry per gate, sorted."""
        return ", ".join(
            f"{name}={str(value).lower()} ({self.sources[name]})"
            for name, value in sorted(self.values.items())
        )


def _parse_bool(text: str, *, what: str) -> bool:
    value = text.strip().lower()
    if value == "true":
        return True
    if value == "false":
        return False
    raise FeatureGateError(f"{what}: {text!r} is not true or false")


def resolve(
    *, known: Mapping[str, FeatureGate], flag: str, environ: Mapping[str, str]
) -> FeatureGates:
    """The value of every known gate from ``--feature-gates`` text and the environment."""
    from_flag: dict[str, bool] = {}
    for entry in (part.strip() for part in flag.split(",")):
        if not entry:
            continue
        name, sep, value = entry.partition("=")
        name = name.strip()
        if not sep or not name:
            raise FeatureGateError(f"--feature-gates: {entry!r} is not Name=true|false")
        if name not in known:
            names = ", ".join(sorted(known))
            raise FeatureGateError(
                f"--feature-gates: unknown feature gate {name!r} (known: {names})"
            )
        if name in from_flag:
            raise FeatureGateError(f"--feature-gates: {name} is given twice")
        from_flag[name] = _parse_bool(value, what=f"--feature-gates {name}")
    values: dict[str, bool] = {}
    sources: dict[str, str] = {}
    for name, gate in known.items():
        if name in from_flag:
            values[name], sources[name] = from_flag[name], "from --feature-gates"
        elif gate.env and environ.get(gate.env, "").strip():
            values[name] = _parse_bool(environ[gate.env], what=f"${gate.env}")
            sources[name] = f"from ${gate.env}"
        else:
            values[name], sources[name] = gate.default, "default"
    return FeatureGates(values=MappingProxyType(values), sources=MappingProxyType(sources))
