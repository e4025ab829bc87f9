"""VectorPack bundles, SQLite cartridges and micro-packs (docs/formats/vectorpack.md)."""
