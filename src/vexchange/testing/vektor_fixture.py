"""The VEKTOR Slipstream database builder, for tests: it is product code (the demo uses it), in
:mod:`vexchange.sample_data`; this name stays so existing imports keep working."""

from ..sample_data import AGENTS, Fixture, build

__all__ = ["AGENTS", "Fixture", "build"]
