"""Test helpers shipped with vexchange: fixture builders and hypothesis strategies."""
