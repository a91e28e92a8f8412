"""The lab machinery: starter generation, overlays, grading, proof (docs/ARCHITECTURE.md)."""
