"""App Service Authentication (Easy Auth) in front of the app, as the platform behaves.

Shaped from the platform's own sources (docs/azure-facts.md, "App Service Authentication"):
- the header is base64 (`Convert.ToBase64String`) of UTF-8 JSON written by .NET's
  DataContractJsonSerializer from `ClaimsIdentitySlim` (Azure/azure-webjobs-sdk-extensions:
  "the same serialization as found in EasyAuth"): members in name order (auth_typ, claims,
  name_typ, role_typ; typ, val), and `/` escaped as `\\/`;
- claims after the default claims mapping: the object id as the objectidentifier URI, app
  roles as `roles` (or the role URI), v2 tokens' `name` / `preferred_username`, an
  application's `azp`;
- with auth on, the platform drops x-ms-client-principal* headers a client sends and adds its
  own for a valid token; with auth off it touches nothing;
- the host learns the state from WEBSITE_AUTH_ENABLED, `bool.ToString()` of the site's
  setting ("True"/"False"; azure-functions-host HostAssignmentContext).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

OBJECT_ID = "http://schemas.microsoft.com/identity/claims/objectidentifier"
TENANT_ID = "http://schemas.microsoft.com/identity/claims/tenantid"
ROLE_URI = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
NAME_URI = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


@dataclass(frozen=True)
class SignedIn:
    """A caller whose token the platform validated."""

    object_id: str
    name: str | None = None  # a user's; None for an application
    roles: tuple[str, ...] = ()
    app_id: str = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
    role_type: str = "roles"  # how the role claims arrive (see the module docstring)
    extra: tuple[tuple[str, str], ...] = field(default=())

    def claims(self) -> list[tuple[str, str]]:
        claims = [("aud", "api://6d5b7f4e-1c1a-4b8e-9d55-3f0e2c7a9b10"),
                  ("iss", f"https://login.microsoftonline.com/{TENANT}/v2.0"),
                  ("azp", self.app_id), (OBJECT_ID, self.object_id), (TENANT_ID, TENANT)]
        if self.name is not None:
            claims += [("name", self.name), ("preferred_username", self.name)]
        claims += [(self.role_type, role) for role in self.roles]
        return claims + list(self.extra) + [("ver", "2.0")]


def _data_contract_json(value) -> str:
    # DataContractJsonSerializer: compact, members sorted, forward slashes escaped.
    return json.dumps(value, separators=(",", ":"), sort_keys=True,
                      ensure_ascii=False).replace("/", "\\/")


def client_principal_header(who: SignedIn, provider: str = "aad") -> str:
    """The x-ms-client-principal value the platform sends for `who`."""
    doc = {"auth_typ": provider,
           "claims": [{"typ": typ, "val": val} for typ, val in who.claims()],
           "name_typ": NAME_URI, "role_typ": ROLE_URI}
    return base64.b64encode(_data_contract_json(doc).encode("utf-8")).decode("ascii")


def host_environment(auth_enabled: bool) -> dict[str, str]:
    """What the platform sets in the app's environment."""
    return {"WEBSITE_AUTH_ENABLED": str(auth_enabled)}  # C# bool.ToString(): True / False


def headers_reaching_the_app(client_headers: dict[str, str], *, auth_enabled: bool,
                             signed_in: SignedIn | None = None) -> dict[str, str]:
    """The request headers the app sees after the platform's front end."""
    if not auth_enabled:
        return dict(client_headers)
    kept = {k: v for k, v in client_headers.items()
            if not k.lower().startswith("x-ms-client-principal")}
    if signed_in is not None:
        kept["X-MS-CLIENT-PRINCIPAL"] = client_principal_header(signed_in)
        kept["X-MS-CLIENT-PRINCIPAL-ID"] = signed_in.object_id
        kept["X-MS-CLIENT-PRINCIPAL-NAME"] = signed_in.name or signed_in.app_id
        kept["X-MS-CLIENT-PRINCIPAL-IDP"] = "aad"
    return kept
