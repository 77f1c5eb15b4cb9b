"""Schemathesis hooks of the contract fuzz (loaded through schemathesis.toml).

The fuzz runs with one national admin key, and the API lets an admin rotate or revoke any key,
its own included: a generated `POST /principals/{id}/rotate` aimed at the fuzzing principal
would end the run's authentication and every later case would only see 401s. Such a call is
sent to another principal instead (`BORDERWATCH_FUZZ_SPARE`, else id 0, which does not exist),
so the two operations are still fuzzed; rotating and revoking one's own key is covered by
tests/test_access.py. The runner checks at the end that its key still works.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis

OWN = os.environ.get("BORDERWATCH_FUZZ_PRINCIPAL")
SPARE = os.environ.get("BORDERWATCH_FUZZ_SPARE", "0")
KEY_OPERATIONS = ("/principals/{principal_id}/rotate", "/principals/{principal_id}/revoke")


def is_own(value: Any) -> bool:
    """Whether a generated path value names the fuzzing principal (as the API would read it:
    `1`, `"1"`, `" +1"`, `"1.0"`)."""
    if OWN is None:
        return False
    try:
        return float(str(value).strip()) == float(OWN)
    except ValueError:
        return False


@schemathesis.hook
def before_call(
    context: schemathesis.HookContext,
    case: schemathesis.Case[Any],  # any API operation
    kwargs: Any,
) -> None:
    """Keep the fuzzing principal's key alive (see the module's text)."""
    if case.operation.path in KEY_OPERATIONS and is_own(case.path_parameters.get("principal_id")):
        case.path_parameters["principal_id"] = SPARE
