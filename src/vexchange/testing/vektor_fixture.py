"""The VEKTOR Slipstream database builder, for tests: it is product code (the demo uses it), in
:mod:`vexchange.sample_data`; this name stays so existing imports keep working."""

from ..sample_data import AGENTS, LEGACY_DDL, NAMESPACES, Fixture, build, main

__all__ = ["AGENTS", "LEGACY_DDL", "NAMESPACES", "Fixture", "build", "main"]

if __name__ == "__main__":  # pragma: no cover - python -m vexchange.testing.vektor_fixture
    raise SystemExit(main())
