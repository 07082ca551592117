"""Well-known names of game.kruise.io (spec §1.1), apart from the models so that light commands need not load them."""

from __future__ import annotations

GROUP = "game.kruise.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Well-known keys (spec §1.1).
GS_STATE_KEY = "game.kruise.io/gs-state"
GS_OPS_STATE_KEY = "game.kruise.io/gs-opsState"
GS_UPDATE_PRIORITY_KEY = "game.kruise.io/gs-update-priority"
GS_DELETE_PRIORITY_KEY = "game.kruise.io/gs-delete-priority"
GS_DELETING_KEY = "game.kruise.io/gs-deleting"
GS_NETWORK_DISABLED_KEY = "game.kruise.io/network-disabled"
GS_OPS_STATE_LAST_CHANGED_KEY = "game.kruise.io/opsState-last-changed-time"
GS_STATE_LAST_CHANGED_KEY = "game.kruise.io/state-last-changed-time"
GS_TEMPLATE_METADATA_HASH_KEY = "game.kruise.io/gsTemplate-metadata-hash"
OWNER_GSS_KEY = "game.kruise.io/owner-gss"
GSS_RESERVE_IDS_KEY = "game.kruise.io/reserve-ids"
WORKLOAD_HASH_KEY = "game.kruise.io/asts-hash"
LIFECYCLE_STATE_KEY = "lifecycle.apps.kruise.io/state"
SQ_CONDITION_PREFIX = "game.kruise.io/"
GS_SYNC_PREFIX = "gs-sync/"
