"""/openapi.json, generated from the msgspec types in `api_types` (the ones that validate and encode)."""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.api_types import Accepted, ErrorBody, Event, Execution, ExecutionCreate, Health, LanguageOut
from gateway.batch_types import Batch, BatchAccepted, BatchCreate, RejudgeAccepted, RejudgeCreate

_REF = "#/components/schemas/{name}"
EXAMPLES: dict[str, Any] = {
    "hello": {"value": {"language": "python", "code": "print('hello')"}},
    "limits": {
        "value": {
            "language": "python",
            "code": "import sys; print(sys.stdin.read())",
            "stdin": "data",
            "limits": {"wall_time_ms": 2000, "memory_mib": 128},
        }
    },
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def build() -> dict[str, Any]:
    types = [ExecutionCreate, Accepted, Execution, list[Event], list[LanguageOut], ErrorBody, Health]
    types += [BatchCreate, BatchAccepted, Batch, RejudgeCreate, RejudgeAccepted]
    schemas, components = msgspec.json.schema_components(types, ref_template=_REF)
    create, accepted, execution, events, languages, error, health = schemas[:7]
    batch_create, batch_accepted, batch, rejudge_create, rejudge_accepted = schemas[7:]

    def err(description: str) -> dict[str, Any]:
        return _json(error, description)

    guarded = {
        "401": err("Missing or unknown API key (when keys are configured)."),
        "429": {
            **err("Rate limited; retry after the given seconds."),
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        },
    }
    id_param = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    security: list[dict[str, list[str]]] = [{"bearer": []}]
    paths: dict[str, Any] = {
        "/v1/executions": {
            "post": {
                "operationId": "createExecution",
                "summary": "Submit code to run.",
                "security": security,
                "parameters": [
                    {
                        "name": "wait",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "boolean"},
                        "description": "200 with the final execution, or 202 once the server maximum wait passes.",
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": create, "examples": EXAMPLES}},
                },
                "responses": {
                    "200": _json(execution, "The finished execution (wait=true)."),
                    "202": {
                        **_json(accepted, "Accepted; or, with wait=true, still running at the maximum wait."),
                        "links": {
                            name: {"operationId": op, "parameters": {"id": "$response.body#/id"}}
                            for name, op in [
                                ("GetExecution", "getExecution"),
                                ("ListEvents", "listExecutionEvents"),
                                ("Cancel", "cancelExecution"),
                            ]
                        },
                    },
                    "400": err("The body is not valid JSON."),
                    "409": err("The id is in use by another tenant."),
                    "413": err("The body is too large."),
                    "422": err("The body is of the wrong shape or breaks the policy; `field` names the culprit."),
                    "503": err("Kafka is unreachable."),
                    **guarded,
                },
            }
        },
        "/v1/executions/{id}": {
            "get": {
                "operationId": "getExecution",
                "security": security,
                "parameters": [id_param],
                "responses": {"200": _json(execution, "The execution."), "404": err("Unknown id."), **guarded},
            }
        },
        "/v1/executions/{id}/events": {
            "get": {
                "operationId": "listExecutionEvents",
                "security": security,
                "parameters": [id_param],
                "responses": {
                    "200": _json(events, "Every transition, oldest first."),
                    "404": err("Unknown id."),
                    **guarded,
                },
            }
        },
        "/v1/executions/{id}/logs": {
            "get": {
                "operationId": "streamExecutionLogs",
                "security": security,
                "parameters": [
                    id_param,
                    {"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {
                        "description": "Server-sent events: `state`, `stdout`, `stderr`, `attempt`, and a final `end`.",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "404": err("Unknown id."),
                    **guarded,
                },
            }
        },
        "/v1/executions/{id}/cancel": {
            "post": {
                "operationId": "cancelExecution",
                "security": security,
                "parameters": [id_param],
                "responses": {
                    "202": _json(accepted, "Cancellation requested (a finished execution stays as it is)."),
                    "404": err("Unknown id."),
                    "503": err("Kafka is unreachable."),
                    **guarded,
                },
            }
        },
        "/v1/executions/{id}/submission": {
            "delete": {
                "operationId": "deleteSubmission",
                "summary": "Delete the submission's code (a tombstone on sandbox.submissions): no more re-judging.",
                "security": security,
                "parameters": [id_param],
                "responses": {
                    "204": {"description": "Deleted."},
                    "404": err("No submission of this id (or another tenant's)."),
                    "503": err("Kafka is unreachable."),
                    **guarded,
                },
            }
        },
        "/v1/batches": {
            "post": {
                "operationId": "createBatch",
                "summary": "Submit many executions at once.",
                "security": security,
                "requestBody": {"required": True, "content": {"application/json": {"schema": batch_create}}},
                "responses": {
                    "202": _json(batch_accepted, "Accepted: the batch id and its executions' ids."),
                    "400": err("The body is not valid JSON."),
                    "409": err("The batch id (or an item's id) is in use by another tenant."),
                    "413": err("The body is too large."),
                    "422": err("An item is of the wrong shape or breaks the policy; `field` names it."),
                    "503": err("Kafka is unreachable."),
                    **guarded,
                },
            }
        },
        "/v1/batches/{id}": {
            "get": {
                "operationId": "getBatch",
                "security": security,
                "parameters": [id_param],
                "responses": {"200": _json(batch, "The batch's states."), "404": err("Unknown id."), **guarded},
            }
        },
        "/v1/rejudge": {
            "post": {
                "operationId": "rejudge",
                "summary": "Run past submissions again with new tests and/or a new checker.",
                "security": security,
                "requestBody": {"required": True, "content": {"application/json": {"schema": rejudge_create}}},
                "responses": {
                    "202": _json(rejudge_accepted, "Accepted: the new batch, each execution linked to its original."),
                    "400": err("The body is not valid JSON."),
                    "404": err("No submission of an id or batch (or another tenant's)."),
                    "409": err("The new batch id is in use."),
                    "413": err("The body is too large."),
                    "422": err("The body is of the wrong shape, changes nothing, or breaks the policy."),
                    "503": err("Kafka is unreachable."),
                    **guarded,
                },
            }
        },
        "/v1/languages": {
            "get": {
                "operationId": "listLanguages",
                "security": security,
                "responses": {"200": _json(languages, "The languages this platform runs."), **guarded},
            }
        },
        "/healthz": {"get": {"operationId": "health", "responses": {"200": _json(health, "The process is up.")}}},
        "/readyz": {
            "get": {
                "operationId": "ready",
                "responses": {
                    "200": _json(health, "Kafka is reachable and the view is rebuilt."),
                    "503": err("Not ready; the message says why."),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "responses": {
                    "200": {
                        "description": "Prometheus text format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "responses": {"200": _json({"type": "object"}, "This document.")},
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Aevatar Sandbox gateway", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
