"""The OpenAPI 3 document of the ops API (observe/api.py), served at /api/openapi.json."""

from __future__ import annotations

from typing import Any

Doc = dict[str, Any]

_OBJ: Doc = {"type": "object", "description": "A Kubernetes-shaped object, as `gk get -o json` prints it",
             "additionalProperties": True}
_STATUS: Doc = {"$ref": "#/components/schemas/Status"}


def _json(schema: Doc, description: str = "OK") -> Doc:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Doc]:
    text = {400: "Bad selector or parameter", 401: "No bearer token", 403: "Wrong token, or the API is read-only",
            404: "Not found", 409: "Stale resourceVersion: nothing was written",
            422: "Invalid body: details.causes name each field path; nothing was written"}
    return {str(c): _json(_STATUS, text[c]) for c in codes}


def _param(name: str, where: str, description: str, schema: Doc | None = None, required: bool = False) -> Doc:
    return {"name": name, "in": where, "description": description, "required": required or where == "path",
            "schema": schema or {"type": "string"}}


_NS = _param("ns", "path", "Namespace")
_NAME = _param("name", "path", "Object name")
_SELECTORS = [
    _param("labelSelector", "query", "Kubernetes label selector, e.g. game.kruise.io/owner-gss=minecraft,env in (a,b)"),
    _param("fieldSelector", "query", "Field selector: spec.opsState, status.currentState, "
           "spec.networkDisabled, metadata.name, metadata.namespace, owner gss"),
    _param("sortBy", "query", "kubectl --sort-by JSONPath, e.g. .status.deletionPriority"),
]


def _kind_paths(plural: str, kind: str) -> dict[str, Doc]:
    listing = {"get": {"summary": f"List {kind}s", "tags": [kind], "parameters": _SELECTORS,
                       "responses": {"200": _json({"$ref": "#/components/schemas/List"}), **_errors(400, 401)}}}
    return {
        f"/api/v1/{plural}": listing,
        f"/api/v1/namespaces/{{ns}}/{plural}": {**listing, "parameters": [_NS]},
        f"/api/v1/namespaces/{{ns}}/{plural}/{{name}}": {
            "parameters": [_NS, _NAME],
            "get": {"summary": f"Get a {kind}", "tags": [kind],
                    "responses": {"200": _json(_OBJ), **_errors(401, 404)}},
            "patch": {"summary": f"Merge-patch a {kind} (validated; metadata.resourceVersion makes it conditional)",
                      "tags": [kind], "security": [{"bearer": []}],
                      "requestBody": {"required": True, "content": {
                          "application/merge-patch+json": {"schema": {"$ref": "#/components/schemas/Patch"}},
                          "application/json": {"schema": {"$ref": "#/components/schemas/Patch"}}}},
                      "responses": {"200": _json(_OBJ), **_errors(401, 403, 404, 409, 422)}},
        },
        f"/api/v1/namespaces/{{ns}}/{plural}/bulk-patch": {
            "parameters": [_NS],
            "post": {"summary": f"One merge patch to many {kind}s, each written or not on its own",
                     "tags": [kind], "security": [{"bearer": []}],
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": {"$ref": "#/components/schemas/BulkPatch"}}}},
                     "responses": {"200": _json({"$ref": "#/components/schemas/BulkPatchResult"}, "All written"),
                                   "207": _json({"$ref": "#/components/schemas/BulkPatchResult"},
                                                "Some objects were not written (see each item's code)"),
                                   **_errors(401, 403, 422)}},
        },
    }


def openapi_document() -> Doc:
    paths: dict[str, Doc] = {}
    paths.update(_kind_paths("gameservers", "GameServer"))
    paths.update(_kind_paths("gameserversets", "GameServerSet"))
    scale_body = {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Scale"}}}}
    paths["/api/v1/namespaces/{ns}/gameserversets/{name}/scale"] = {
        "parameters": [_NS, _NAME],
        "get": {"summary": "The set's Scale", "tags": ["GameServerSet"],
                "responses": {"200": _json({"$ref": "#/components/schemas/Scale"}), **_errors(401, 404)}},
        "put": {"summary": "Scale the set (scale-in honours opsState and deletionPriority)", "tags": ["GameServerSet"],
                "security": [{"bearer": []}], "requestBody": scale_body,
                "responses": {"200": _json({"$ref": "#/components/schemas/Scale"}),
                              **_errors(401, 403, 404, 409, 422)}},
        "patch": {"summary": "Same as PUT", "tags": ["GameServerSet"], "security": [{"bearer": []}],
                  "requestBody": scale_body,
                  "responses": {"200": _json({"$ref": "#/components/schemas/Scale"}),
                                **_errors(401, 403, 404, 409, 422)}},
    }
    paths["/api/v1/namespaces/{ns}/gameservers/{name}/history"] = {
        "parameters": [_NS, _NAME],
        "get": {"summary": "Service quality results and opsState timeline of one game server, with its events",
                "tags": ["GameServer"], "responses": {"200": _json({"type": "object", "properties": {
                    "serviceQualitiesConditions": {"type": "array", "items": {"type": "object"}},
                    "serviceQualityHistory": {"type": "object", "additionalProperties": {
                        "type": "array", "items": {"type": "object"}}},
                    "opsStateHistory": {"type": "array", "items": {"type": "object"}},
                    "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}}}}),
                    **_errors(401, 404)}},
    }
    paths["/api/v1/namespaces/{ns}/gameservers/{name}/log"] = {
        "parameters": [_NS, _NAME, _param("container", "query", "Container (default: the first)"),
                       _param("tailLines", "query", "Lines from the end (default 200)", {"type": "integer"})],
        "get": {"summary": "The tail of a container's log", "tags": ["GameServer"],
                "responses": {"200": {"description": "Log text", "content": {"text/plain": {
                    "schema": {"type": "string"}}}}, **_errors(400, 401, 404)}},
    }
    events_get = {"summary": "Events, oldest first (repeats folded with a count)", "tags": ["Event"],
                  "parameters": [_param("type", "query", "Normal or Warning"),
                                 _param("kind", "query", "Involved object's kind"),
                                 _param("name", "query", "Involved object's name"),
                                 _param("limit", "query", "At most this many (newest)", {"type": "integer"})],
                  "responses": {"200": _json({"type": "object", "properties": {
                      "items": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}}}}),
                      **_errors(400, 401)}}
    paths["/api/v1/events"] = {"get": events_get}
    paths["/api/v1/namespaces/{ns}/events"] = {"parameters": [_NS], "get": events_get}
    paths["/api/v1/stream"] = {"get": {
        "summary": "Server-sent events: `gameserver` and `gameserverset` ({type: ADDED|MODIFIED|DELETED, object}) "
                   "and `event` (an Event); a comment every 15 s keeps the connection open",
        "tags": ["Event"], "parameters": [_param("namespace", "query", "Only this namespace")],
        "responses": {"200": {"description": "An endless text/event-stream",
                              "content": {"text/event-stream": {"schema": {"type": "string"}}}}, **_errors(401)}}}
    paths["/api/v1/whoami"] = {"get": {"summary": "Whether writes are allowed, and who the caller is taken to be",
                                       "responses": {"200": _json({"type": "object"})}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Gamekeeper ops API", "version": "v1",
                 "description": "GameServers and GameServerSets (game.kruise.io/v1alpha1) of a running Gamekeeper "
                                "controller. Writes need `Authorization: Bearer TOKEN`; set `X-Gamekeeper-Caller` "
                                "to name yourself in the Event each write records."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "List": {"type": "object", "required": ["items"], "properties": {
                    "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                    "items": {"type": "array", "items": _OBJ}}},
                "Patch": {"type": "object", "description": "JSON merge patch (RFC 7386) of spec, metadata.labels, "
                          "metadata.annotations; metadata.resourceVersion makes it conditional",
                          "properties": {"spec": {"type": "object"}, "metadata": {"type": "object", "properties": {
                              "labels": {"type": "object"}, "annotations": {"type": "object"},
                              "resourceVersion": {"type": "string"}}}}},
                "BulkPatch": {"type": "object", "required": ["patch"], "properties": {
                    "patch": {"$ref": "#/components/schemas/Patch"},
                    "items": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
                        "name": {"type": "string"}, "resourceVersion": {"type": "string"}}}},
                    "labelSelector": {"type": "string"}, "fieldSelector": {"type": "string"}}},
                "BulkPatchResult": {"type": "object", "properties": {
                    "matched": {"type": "integer"}, "summary": {"type": "object"},
                    "items": {"type": "array", "items": {"type": "object", "properties": {
                        "name": {"type": "string"}, "code": {"type": "integer"},
                        "result": {"type": "string", "description": "patched, unchanged, Conflict, Invalid, NotFound"},
                        "resourceVersion": {"type": "string"}, "message": {"type": "string"}}}}}},
                "Scale": {"type": "object", "properties": {
                    "metadata": {"type": "object", "properties": {"resourceVersion": {"type": "string"}}},
                    "spec": {"type": "object", "required": ["replicas"], "properties": {
                        "replicas": {"type": "integer", "minimum": 0}}},
                    "status": {"type": "object"}}},
                "Event": {"type": "object", "properties": {
                    "involvedObject": {"type": "object"}, "type": {"type": "string"}, "reason": {"type": "string"},
                    "message": {"type": "string"}, "count": {"type": "integer"},
                    "firstTimestamp": {"type": "string"}, "lastTimestamp": {"type": "string"}}},
                "Status": {"type": "object", "required": ["code", "reason", "message"], "properties": {
                    "kind": {"type": "string"}, "code": {"type": "integer"}, "reason": {"type": "string"},
                    "message": {"type": "string"}, "details": {"type": "object", "properties": {
                        "causes": {"type": "array", "items": {"type": "object", "properties": {
                            "field": {"type": "string"}, "message": {"type": "string"}}}}}}}},
            },
        },
    }
