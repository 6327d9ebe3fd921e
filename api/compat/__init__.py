"""Compatibility front doors: translations between the peers' shapes and the native handlers."""
