"""Typed `game.kruise.io/v1alpha1` objects and the few core objects the controllers need.

Field names and shapes follow OpenKruiseGame's Go types (spec §1) so that the same YAML works with
`kubectl apply` and with `gk apply`. Models are strict: YAML types are taken as written (`"3"` is not an
integer, `"yes"` is not a boolean), and unknown fields are errors rather than silently dropped.
"""

from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from gamekeeper.api.keys import (  # re-exported: importers of this module have always found them here
    API_VERSION as API_VERSION,
)
from gamekeeper.api.keys import (
    GROUP as GROUP,
)
from gamekeeper.api.keys import (
    GS_DELETE_PRIORITY_KEY as GS_DELETE_PRIORITY_KEY,
)
from gamekeeper.api.keys import (
    GS_DELETING_KEY as GS_DELETING_KEY,
)
from gamekeeper.api.keys import (
    GS_NETWORK_DISABLED_KEY as GS_NETWORK_DISABLED_KEY,
)
from gamekeeper.api.keys import (
    GS_OPS_STATE_KEY as GS_OPS_STATE_KEY,
)
from gamekeeper.api.keys import (
    GS_OPS_STATE_LAST_CHANGED_KEY as GS_OPS_STATE_LAST_CHANGED_KEY,
)
from gamekeeper.api.keys import (
    GS_STATE_KEY as GS_STATE_KEY,
)
from gamekeeper.api.keys import (
    GS_STATE_LAST_CHANGED_KEY as GS_STATE_LAST_CHANGED_KEY,
)
from gamekeeper.api.keys import (
    GS_SYNC_PREFIX as GS_SYNC_PREFIX,
)
from gamekeeper.api.keys import (
    GS_TEMPLATE_METADATA_HASH_KEY as GS_TEMPLATE_METADATA_HASH_KEY,
)
from gamekeeper.api.keys import (
    GS_UPDATE_PRIORITY_KEY as GS_UPDATE_PRIORITY_KEY,
)
from gamekeeper.api.keys import (
    GSS_RESERVE_IDS_KEY as GSS_RESERVE_IDS_KEY,
)
from gamekeeper.api.keys import (
    LIFECYCLE_STATE_KEY as LIFECYCLE_STATE_KEY,
)
from gamekeeper.api.keys import (
    OWNER_GSS_KEY as OWNER_GSS_KEY,
)
from gamekeeper.api.keys import (
    SQ_CONDITION_PREFIX as SQ_CONDITION_PREFIX,
)
from gamekeeper.api.keys import (
    VERSION as VERSION,
)
from gamekeeper.api.keys import (
    WORKLOAD_HASH_KEY as WORKLOAD_HASH_KEY,
)

IntOrString = int | str

KNOWN_OPS_STATES = ("None", "WaitToBeDeleted", "Maintaining", "Allocated", "Kill")
GAME_SERVER_STATES = (
    "Unknown", "Creating", "Ready", "NotReady", "Crash", "Updating", "Deleting", "PreDelete", "PreUpdate",
)


def check_ops_state(value: str | None) -> str | None:
    """Custom opsStates are allowed (upstream #151), but a near miss of a known one is surely a typo.

    `kill` would rank like None on scale-in instead of going first: refuse it and name the right spelling.
    """
    if not value or "{{" in value or value in KNOWN_OPS_STATES:
        return value
    lowered = {s.lower(): s for s in KNOWN_OPS_STATES}
    match = lowered.get(value.lower())
    if match is None:
        close = difflib.get_close_matches(value.lower(), list(lowered), n=1, cutoff=0.75)
        prefix = [s for k, s in lowered.items() if len(value) >= 4 and k.startswith(value.lower())]
        match = lowered[close[0]] if close else (prefix[0] if prefix else None)
    if match is not None:
        raise ValueError(f"{value!r} is not a known opsState; did you mean {match!r}? (opsState is case-sensitive)")
    return value


class Model(BaseModel):
    """Strict, camelCase, unknown fields rejected."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        populate_by_name=True,
        alias_generator=to_camel,
        validate_default=False,
    )

    def dump(self) -> dict[str, Any]:
        """The Kubernetes-shaped dict: only fields that were set, camelCase keys."""
        return self.model_dump(by_alias=True, exclude_unset=True, mode="json")


class Open(Model):
    """A Kubernetes structure we carry but do not interpret (kept verbatim, any fields)."""

    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=True, alias_generator=to_camel)


class OwnerReference(Model):
    api_version: str
    kind: str
    name: str
    uid: str = ""
    controller: bool | None = None
    block_owner_deletion: bool | None = None


class ObjectMeta(Model):
    name: str = ""
    generate_name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    deletion_grace_period_seconds: int | None = None
    owner_references: list[OwnerReference] | None = None
    finalizers: list[str] | None = None
    managed_fields: list[dict[str, Any]] | None = None


class TemplateMeta(Model):
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    name: str | None = None
    namespace: str | None = None
    creation_timestamp: str | None = None


# --- probes -------------------------------------------------------------------------------------------


class ExecAction(Model):
    command: list[str] = Field(min_length=1)


class HTTPHeader(Model):
    name: str
    value: str


class HTTPGetAction(Model):
    path: str | None = None
    port: IntOrString
    host: str | None = None
    scheme: Literal["HTTP", "HTTPS"] | None = None
    http_headers: list[HTTPHeader] | None = None


class TCPSocketAction(Model):
    port: IntOrString
    host: str | None = None


class GRPCAction(Model):
    port: int
    service: str | None = None


# OKG defaults when a field is 0 or absent (spec §2.1); Kubernetes' own defaults differ on purpose.
PROBE_DEFAULTS = {
    "timeoutSeconds": 5,
    "initialDelaySeconds": 10,
    "periodSeconds": 3,
    "successThreshold": 1,
    "failureThreshold": 3,
}


class Probe(Model):
    exec: ExecAction | None = None
    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    grpc: GRPCAction | None = None
    initial_delay_seconds: int | None = Field(default=None, ge=0)
    timeout_seconds: int | None = Field(default=None, ge=0)
    period_seconds: int | None = Field(default=None, ge=0)
    success_threshold: int | None = Field(default=None, ge=0)
    failure_threshold: int | None = Field(default=None, ge=0)
    termination_grace_period_seconds: int | None = None

    def effective(self, field: str) -> int:
        """The value OKG uses: the field, or its default when absent or 0."""
        value: int | None = getattr(self, field)
        return value if value else PROBE_DEFAULTS[to_camel(field)]


# --- containers and pods --------------------------------------------------------------------------------


class EnvVar(Model):
    name: str = Field(min_length=1)
    value: str | None = None
    value_from: Open | None = None


class ContainerPort(Model):
    container_port: int = Field(ge=1, le=65535)
    name: str | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] | None = None
    host_port: int | None = Field(default=None, ge=0, le=65535)
    host_ip: str | None = None


class ResourceRequirements(Model):
    limits: dict[str, IntOrString] | None = None
    requests: dict[str, IntOrString] | None = None
    claims: list[Open] | None = None


class Container(Model):
    name: str = Field(min_length=1)
    image: str | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    working_dir: str | None = None
    env: list[EnvVar] | None = None
    ports: list[ContainerPort] | None = None
    resources: ResourceRequirements | None = None
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    # Kubernetes fields that the embedded runtime carries but does not act on (see docs/embedded-mode.md).
    env_from: list[Open] | None = None
    volume_mounts: list[Open] | None = None
    volume_devices: list[Open] | None = None
    liveness_probe: Open | None = None
    readiness_probe: Open | None = None
    startup_probe: Open | None = None
    lifecycle: Open | None = None
    security_context: Open | None = None
    stdin: bool | None = None
    stdin_once: bool | None = None
    tty: bool | None = None
    termination_message_path: str | None = None
    termination_message_policy: str | None = None
    resize_policy: list[Open] | None = None
    restart_policy: str | None = None


class PodSpec(Model):
    containers: list[Container] = Field(min_length=1)
    init_containers: list[Container] | None = None
    restart_policy: Literal["Always", "OnFailure", "Never"] | None = None
    termination_grace_period_seconds: int | None = Field(default=None, ge=0)
    node_name: str | None = None
    readiness_gates: list[Open] | None = None
    # Carried, not acted on in embedded mode.
    volumes: list[Open] | None = None
    node_selector: dict[str, str] | None = None
    affinity: Open | None = None
    tolerations: list[Open] | None = None
    service_account_name: str | None = None
    service_account: str | None = None
    automount_service_account_token: bool | None = None
    security_context: Open | None = None
    host_network: bool | None = None
    host_pid: bool | None = None
    host_ipc: bool | None = None
    dns_policy: str | None = None
    dns_config: Open | None = None
    hostname: str | None = None
    subdomain: str | None = None
    image_pull_secrets: list[Open] | None = None
    priority_class_name: str | None = None
    priority: int | None = None
    scheduler_name: str | None = None
    topology_spread_constraints: list[Open] | None = None
    active_deadline_seconds: int | None = None
    enable_service_links: bool | None = None
    share_process_namespace: bool | None = None
    runtime_class_name: str | None = None
    overhead: dict[str, IntOrString] | None = None
    host_aliases: list[Open] | None = None
    ephemeral_containers: list[Open] | None = None
    preemption_policy: str | None = None
    os: Open | None = None
    set_hostname_as_fqdn: bool | None = None
    scheduling_gates: list[Open] | None = None
    resource_claims: list[Open] | None = None


class PodTemplateSpec(Model):
    metadata: TemplateMeta | None = None
    spec: PodSpec


class GameServerTemplate(PodTemplateSpec):
    volume_claim_templates: list[Open] | None = None
    reclaim_policy: Literal["Cascade", "Delete"] | None = None


# --- service quality ------------------------------------------------------------------------------------


class GameServerContainer(Model):
    name: str = Field(min_length=1)
    image: str | None = None
    resources: ResourceRequirements | None = None


class ServiceQualityAction(Model):
    state: bool
    result: str | None = None
    ops_state: str | None = None
    update_priority: IntOrString | None = None
    deletion_priority: IntOrString | None = None
    network_disabled: bool | None = None
    containers: list[GameServerContainer] | None = None
    annotations: dict[str, str] | None = None
    labels: dict[str, str] | None = None

    _ops_state = field_validator("ops_state")(check_ops_state)


class ServiceQuality(Probe):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
    container_name: str | None = None
    permanent: bool
    service_quality_action: list[ServiceQualityAction] | None = None

    @model_validator(mode="after")
    def _one_handler(self) -> ServiceQuality:
        handlers = [h for h in ("exec", "http_get", "tcp_socket", "grpc") if getattr(self, h) is not None]
        if len(handlers) > 1:
            raise ValueError(f"set exactly one of exec, httpGet, tcpSocket, grpc (got {', '.join(handlers)})")
        return self


# --- GameServerSet ----------------------------------------------------------------------------------------


class RollingUpdate(Model):
    partition: int | None = Field(default=None, ge=0)
    max_unavailable: IntOrString | None = None
    pod_update_policy: Literal["ReCreate", "InPlaceIfPossible", "InPlaceOnly"] | None = None
    paused: bool | None = None
    in_place_update_strategy: Open | None = None
    min_ready_seconds: int | None = Field(default=None, ge=0)


class UpdateStrategy(Model):
    type: Literal["RollingUpdate", "OnDelete"] | None = None
    rolling_update: RollingUpdate | None = None


class ScaleStrategy(Model):
    max_unavailable: IntOrString | None = None
    scale_down_strategy_type: Literal["General", "ReserveIds"] | None = None


class NetworkConfParam(Model):
    name: str
    value: str


class Network(Model):
    network_type: str | None = None
    network_conf: list[NetworkConfParam] | None = None


class GameServerSetSpec(Model):
    replicas: int = Field(ge=0)
    game_server_template: GameServerTemplate
    service_name: str | None = None
    reserve_game_server_ids: list[IntOrString] | None = None
    service_qualities: list[ServiceQuality] | None = None
    update_strategy: UpdateStrategy | None = None
    scale_strategy: ScaleStrategy | None = None
    network: Network | None = None
    lifecycle: Open | None = None
    persistent_volume_claim_retention_policy: Open | None = None

    @model_validator(mode="after")
    def _qualities_name_containers(self) -> GameServerSetSpec:
        names = [c.name for c in self.game_server_template.spec.containers]
        seen: set[str] = set()
        for sq in self.service_qualities or []:
            if sq.name in seen:
                raise ValueError(f"serviceQualities: duplicate name {sq.name!r}")
            seen.add(sq.name)
            if sq.container_name is not None and sq.container_name not in names:
                raise ValueError(
                    f"serviceQualities[{sq.name}].containerName: {sq.container_name!r} is not a container "
                    f"of gameServerTemplate (containers: {', '.join(names)})"
                )
        return self


class GameServerSetStatus(Open):
    pass


class GameServerSet(Model):
    api_version: Literal["game.kruise.io/v1alpha1"]
    kind: Literal["GameServerSet"]
    metadata: ObjectMeta
    spec: GameServerSetSpec
    status: dict[str, Any] | None = None


# --- GameServer -------------------------------------------------------------------------------------------


class GameServerSpec(Model):
    ops_state: str | None = None
    update_priority: IntOrString | None = None
    deletion_priority: IntOrString | None = None
    network_disabled: bool | None = None
    containers: list[GameServerContainer] | None = None

    _ops_state = field_validator("ops_state")(check_ops_state)


class GameServer(Model):
    api_version: Literal["game.kruise.io/v1alpha1"]
    kind: Literal["GameServer"]
    metadata: ObjectMeta
    spec: GameServerSpec | None = None
    status: dict[str, Any] | None = None


KIND_MODELS: dict[str, type[Model]] = {"GameServerSet": GameServerSet, "GameServer": GameServer}
