"""Gamekeeper."""
