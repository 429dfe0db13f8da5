"""schemathesis hooks for devmesh: never revoke the API keys the run authenticates with."""

import os

import schemathesis

PROTECTED = set(filter(None, os.environ.get("PROTECTED_KEY_IDS", "").split(",")))
NO_SUCH_KEY = "00000000-0000-7000-8000-000000000000"


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    if case.operation.method.upper() == "DELETE" and case.operation.path == "/api/v1/api-keys/{id}":
        if (case.path_parameters or {}).get("id") in PROTECTED:
            case.path_parameters["id"] = NO_SUCH_KEY
