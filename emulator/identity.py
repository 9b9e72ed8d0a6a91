"""Managed identity (App Service protocol, api-version 2019-08-01) and bearer-token checks.

Tokens are JWTs signed with a per-process HMAC key: realistic claims (oid, appid, tid, aud)
so code may decode them, and only tokens this emulator issued are accepted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from emulator.errors import ArmError

ARM_AUDIENCES = {"https://management.azure.com", "https://management.core.windows.net"}
_PROCESS_KEY = secrets.token_bytes(32)
DEFAULT_TENANT = "72f988bf-0000-4000-8000-00000000e001"


@dataclass(frozen=True)
class Identity:
    principal_id: str  # object id: what role assignments name
    client_id: str
    name: str = "function-app"
    tenant_id: str = DEFAULT_TENANT


DEFAULT_IDENTITY = Identity(
    "11111111-1111-4111-8111-111111111111",
    "22222222-2222-4222-8222-222222222222",
    "system-assigned",
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenService:
    def __init__(self, identities: list[Identity] | None = None, lifetime: int = 3600):
        self.identities = list(identities or [DEFAULT_IDENTITY])
        self.header_secret = secrets.token_hex(16)  # the IDENTITY_HEADER value
        # One signing key per process: a credential that cached a token from an earlier
        # emulator in the same test session still authenticates against the next one.
        self._key = _PROCESS_KEY
        self.lifetime = lifetime
        self.issued = 0

    # --- token endpoint -------------------------------------------------------------------
    def find(self, client_id=None, principal_id=None, resource_id=None) -> Identity | None:
        if not (client_id or principal_id or resource_id):
            return self.identities[0]  # system-assigned = the first identity
        for ident in self.identities:
            if client_id and ident.client_id.lower() == client_id.lower():
                return ident
            if principal_id and ident.principal_id.lower() == principal_id.lower():
                return ident
            if resource_id and resource_id.lower().endswith("/" + ident.name.lower()):
                return ident
        return None

    def token_response(self, headers, params: dict) -> tuple[int, dict]:
        """Answer GET IDENTITY_ENDPOINT?api-version=2019-08-01&resource=...(&client_id=...)."""
        if headers.get("X-IDENTITY-HEADER") != self.header_secret:
            return 401, {"statusCode": 401, "message": "X-IDENTITY-HEADER missing or wrong."}
        if params.get("api-version") != "2019-08-01":
            return 400, {"statusCode": 400, "message": "api-version 2019-08-01 is required."}
        resource = params.get("resource")
        if not resource:
            return 400, {"statusCode": 400, "message": "resource is required."}
        ident = self.find(params.get("client_id"), params.get("object_id"), params.get("mi_res_id"))
        if ident is None:
            return 400, {"statusCode": 400, "message": "No managed identity matches the request."}
        now = int(time.time())
        token = self.issue(ident, resource, now)
        self.issued += 1
        return 200, {
            "access_token": token,
            "expires_on": str(now + self.lifetime),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": ident.client_id,
        }

    def issue(self, ident: Identity, audience: str, now: int | None = None) -> str:
        now = int(time.time()) if now is None else now
        header = {"alg": "HS256", "typ": "JWT"}
        claims = {
            "aud": audience,
            "iss": f"https://sts.windows.net/{ident.tenant_id}/",
            "iat": now,
            "nbf": now,
            "exp": now + self.lifetime,
            "oid": ident.principal_id,
            "sub": ident.principal_id,
            "appid": ident.client_id,
            "tid": ident.tenant_id,
            "idtyp": "app",
            "xms_mirid": ident.name,
        }
        signing = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
        sig = hmac.new(self._key, signing.encode(), hashlib.sha256).digest()
        return signing + "." + _b64(sig)

    # --- ARM side -------------------------------------------------------------------------
    def verify(self, authorization: str | None, audiences=ARM_AUDIENCES) -> Identity:
        """Bearer header -> Identity, or ArmError 401 shaped like ARM's. `audiences`: the
        token audiences the API accepts (ARM's by default; a DCE takes Azure Monitor's)."""
        if not authorization:
            raise _unauth(
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            )
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or token.count(".") != 2:
            raise _unauth("InvalidAuthenticationToken", "The access token is invalid.")
        signing, _, sig = token.rpartition(".")
        good = hmac.new(self._key, signing.encode(), hashlib.sha256).digest()
        try:
            valid = hmac.compare_digest(good, _unb64(sig))
            claims = json.loads(_unb64(signing.split(".")[1]))
        except (ValueError, IndexError):
            valid, claims = False, {}
        if not valid:
            raise _unauth("InvalidAuthenticationToken", "The access token is invalid.")
        if claims.get("exp", 0) < time.time():
            raise _unauth(
                "ExpiredAuthenticationToken",
                "The access token expiry UTC time is earlier than current UTC time.",
            )
        if str(claims.get("aud", "")).rstrip("/") not in audiences:
            raise _unauth(
                "InvalidAuthenticationTokenAudience",
                f"The access token has been obtained for wrong audience or resource "
                f"'{claims.get('aud')}'.",
            )
        ident = self.find(principal_id=claims.get("oid"))
        return ident or Identity(claims.get("oid", ""), claims.get("appid", ""), "unknown")


def _unauth(code: str, message: str) -> ArmError:
    # ARM sends a WWW-Authenticate challenge without claims; the SDK then raises.
    return ArmError(
        401,
        code,
        message,
        headers={
            "WWW-Authenticate": 'Bearer authorization_uri="https://login.windows.net/", '
            'error="invalid_token", error_description="' + message.replace('"', "'") + '"'
        },
    )
