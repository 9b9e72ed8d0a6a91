"""Managed identity token endpoint, bearer checks (401) and per-identity RBAC (403)."""

import time

import pytest
import requests
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

from emulator.identity import Identity
from tests.support.fixtures_emulator import RG


class StaticToken:
    """A credential handing out a fixed string: to show the emulator rejects foreign tokens."""

    def __init__(self, token):
        self.token = token

    def get_token(self, *scopes, **kwargs):
        return AccessToken(self.token, int(time.time()) + 3600)


def test_managed_identity_credentials_get_tokens_from_the_emulator(emulator):
    emu = emulator()
    for cred in (ManagedIdentityCredential(), DefaultAzureCredential()):
        tok = cred.get_token("https://management.azure.com/.default")
        assert tok.token.count(".") == 2 and tok.expires_on > time.time() + 3000
    assert emu.tokens.issued == 2


def test_token_endpoint_protocol(emulator):
    emu = emulator()
    params = {"api-version": "2019-08-01", "resource": "https://management.azure.com"}
    bad = requests.get(emu.identity_endpoint, params=params, timeout=5)
    assert bad.status_code == 401  # X-IDENTITY-HEADER is required
    ok = requests.get(
        emu.identity_endpoint,
        params=params,
        timeout=5,
        headers={"X-IDENTITY-HEADER": emu.identity_header},
    )
    body = ok.json()
    assert ok.status_code == 200
    assert set(body) >= {"access_token", "expires_on", "resource", "token_type", "client_id"}
    assert body["resource"] == "https://management.azure.com"


def test_requests_without_or_with_bad_token_get_401(emulator, arm_clients):
    emu = emulator()
    url = (
        f"{emu.base_url}/subscriptions/{emu.subscription_id}/resourceGroups/{RG}/providers/"
        "Microsoft.Network/loadBalancers/ilb?api-version=2024-05-01"
    )
    r = requests.get(url, verify=emu.ca_path, timeout=5)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "AuthenticationFailed"
    assert "WWW-Authenticate" in r.headers
    r = requests.get(
        url, verify=emu.ca_path, timeout=5, headers={"Authorization": f"Bearer {emu.token_for()}"}
    )
    assert r.status_code == 200 and r.json()["name"] == "ilb"
    wrong_aud = emu.token_for(audience="https://storage.azure.com")
    r = requests.get(
        url, verify=emu.ca_path, timeout=5, headers={"Authorization": f"Bearer {wrong_aud}"}
    )
    assert r.json()["error"]["code"] == "InvalidAuthenticationTokenAudience"
    forged = arm_clients(emu, credential=StaticToken("a.b.c")).network
    with pytest.raises(ClientAuthenticationError) as exc:
        forged.load_balancers.get(RG, "ilb")
    assert exc.value.status_code == 401
    assert exc.value.error.code == "InvalidAuthenticationToken"
    assert [e.status for e in emu.requests] == [401, 200, 401, 401]
    assert emu.requests[1].principal == emu.tokens.identities[0].principal_id


def test_roles_enforced_per_identity(emulator, arm_clients, monkeypatch):
    reader = Identity(
        "aaaaaaaa-0000-4000-8000-000000000001", "aaaaaaaa-0000-4000-8000-0000000000c1", "reader"
    )
    writer = Identity(
        "bbbbbbbb-0000-4000-8000-000000000001", "bbbbbbbb-0000-4000-8000-0000000000c1", "writer"
    )
    emu = emulator(
        identities=[reader, writer],
        roles={
            reader.principal_id: {"*/read"},
            writer.client_id: {
                "Microsoft.Compute/virtualMachines/*",
                "*/read",
                "Microsoft.Compute/locations/*",
            },
        },
    )
    as_reader = arm_clients(emu)  # system-assigned = first identity
    assert as_reader.compute.virtual_machines.get(RG, "vm1").name == "vm1"
    with pytest.raises(HttpResponseError) as exc:
        as_reader.compute.virtual_machines.begin_deallocate(RG, "vm1").result()
    assert exc.value.status_code == 403
    assert exc.value.error.code == "AuthorizationFailed"
    assert "Microsoft.Compute/virtualMachines/deallocate/action" in exc.value.error.message
    as_writer = arm_clients(emu, credential=ManagedIdentityCredential(client_id=writer.client_id))
    as_writer.compute.virtual_machines.begin_deallocate(RG, "vm1").result()
    # the VM write needs networkInterfaces/join/action too (a linked access check)
    vm = as_writer.compute.virtual_machines.get(RG, "vm1")
    with pytest.raises(HttpResponseError) as exc:
        as_writer.compute.virtual_machines.begin_create_or_update(RG, "vm1", vm).result()
    assert "Microsoft.Network/networkInterfaces/join/action" in exc.value.error.message
    used = emu.requests.actions_used(writer.principal_id)
    assert "Microsoft.Compute/virtualMachines/deallocate/action" in used
    assert "Microsoft.Network/networkInterfaces/join/action" in used
    denied = [e for e in emu.requests if e.status == 403]
    assert [e.principal for e in denied] == [reader.principal_id, writer.principal_id]
