"""Embedded mode: everything on one machine."""
