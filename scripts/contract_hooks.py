"""schemathesis hooks for scripts/contract: the logout operation's own session, and a check.

Valid input (a request openapi.yaml describes) must not be refused for its shape. A few
operations also check what no schema can say: that a public key is a real RSA key, that
a statement's signature verifies, that an attachment is the sender's own blob, that a
message is not to oneself. scripts/contract.toml lets those operations answer valid
input with 400; this check narrows that to the codes that say exactly those things, so
that any other 400 for valid input is still a failure.
"""

import os

import schemathesis

LOGOUT = "/v1/sessions/current"
# Operations that take no session; they are sent none.
ANONYMOUS = ["/healthz", "/readyz", "/v1/usernames/{username}", "/v1/sessions"]


def bearer(case, token):
    case.headers = case.headers or {}
    case.headers["Authorization"] = f"Bearer {token}"


@schemathesis.auth().skip_for(path=[LOGOUT, *ANONYMOUS])
class CallerSession:
    """The session every operation runs as."""

    def get(self, case, ctx):
        return os.environ["FASTCHAT_CONTRACT_TOKEN"]

    def set(self, case, data, ctx):
        bearer(case, data)


@schemathesis.auth().apply_to(path=LOGOUT)
class LogoutSession:
    """Logging out ends the session it runs as: that operation gets a session of its own,
    so that the caller's outlives the run."""

    def get(self, case, ctx):
        return os.environ["FASTCHAT_CONTRACT_LOGOUT_TOKEN"]

    def set(self, case, data, ctx):
        bearer(case, data)


# The 400 codes each operation may answer to input the document calls valid, and why.
REFUSALS_NO_SCHEMA_CAN_SAY = {
    # A PEM-shaped key that is not an RSA key of 2048 bits or more.
    ("POST", "/v1/users"): {"invalid_public_key"},
    # An attachment that is not the sender's blob; a message to oneself.
    ("POST", "/v1/messages"): {"invalid_attachment", "invalid_recipient"},
    # A statement that does not verify or does not say what the request does; more
    # members than a group holds, counted after duplicates and the creator are removed.
    ("POST", "/v1/groups"): {"invalid_statement", "group_too_large"},
    ("POST", "/v1/groups/{name}/members"): {"invalid_statement"},
    ("POST", "/v1/groups/{name}/admins"): {"invalid_statement"},
    ("DELETE", "/v1/groups/{name}/members/{username}"): {"invalid_statement"},
}


@schemathesis.check
def refused_only_for_what_no_schema_can_say(ctx, response, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 400:
        return None
    allowed = REFUSALS_NO_SCHEMA_CAN_SAY.get((case.method.upper(), case.path))
    if allowed is None:
        # positive_data_acceptance reports it.
        return None
    try:
        code = response.json().get("code")
    except Exception:  # noqa: BLE001 - a 400 that is not JSON is a failure too
        code = None
    if code not in allowed:
        raise AssertionError(
            f"Valid data was refused with 400 {code!r}; only {sorted(allowed)} can refuse "
            "what the schema allows"
        )
    return None
