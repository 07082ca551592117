"""Observability adapters: event notifications (notify*), and what else watches the fleet from the outside.

Modules here read the state and talk to the outside world; the controllers never import them, so an outage of
a chat service or a metrics scraper cannot reach the reconcile loops.
"""
