"""Ports: the interfaces controllers are written against; adapters implement them."""
