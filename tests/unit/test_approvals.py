"""Who may approve a plan: the platform's principal header, read only while its auth is on."""

from __future__ import annotations

import base64
import json

import pytest

from shared.core.approvals import (
    APPROVER_ROLE,
    KEY_ONLY_PRINCIPAL,
    check_approver,
    decode_client_principal,
)
from shared.core.vocab import ApproverVerdict
from shared.settings import Settings
from tests.support.easy_auth import (
    ROLE_URI,
    SignedIn,
    client_principal_header,
    headers_reaching_the_app,
    host_environment,
)

ALICE = SignedIn("3f2504e0-4f89-41d3-9a0c-0305e82c3301", "alice@contoso.com",
                 roles=(APPROVER_ROLE,))
BOB = SignedIn("7c9e6679-7425-40de-944b-e07fc1f90ae7", "bob@contoso.com", roles=("Reader",))
PIPELINE = SignedIn("16fe2a4c-8a04-4a9b-9d0e-6a1f3b2c4d5e", roles=(APPROVER_ROLE,),
                    app_id="5a1b2c3d-0000-4000-8000-00000000abcd")


def check(header, *, auth=True, key_only=False):
    return check_approver(header, platform_auth_enabled=auth, key_only_allowed=key_only)


def test_the_platform_header_decodes_to_the_verified_principal():
    header = client_principal_header(ALICE)
    assert "\\/" in base64.b64decode(header).decode()  # the platform's serializer escapes /
    p = decode_client_principal(header)
    assert (p.object_id, p.name, p.provider) == (ALICE.object_id, "alice@contoso.com", "aad")
    assert p.roles == {APPROVER_ROLE}


def test_role_claims_under_the_mapped_role_type_count_too():
    as_uri = SignedIn(ALICE.object_id, ALICE.name, (APPROVER_ROLE,), role_type=ROLE_URI)
    assert decode_client_principal(client_principal_header(as_uri)).roles == {APPROVER_ROLE}


def test_an_application_is_named_by_its_client_id():
    p = decode_client_principal(client_principal_header(PIPELINE))
    assert p.name == PIPELINE.app_id and p.object_id == PIPELINE.object_id


@pytest.mark.parametrize("header,text", [
    ("not base64!", "base64"),
    (base64.b64encode(b"[1]").decode(), "JSON object"),
    (client_principal_header(ALICE, provider="github"), "not Entra ID"),
    (base64.b64encode(json.dumps({"auth_typ": "aad", "claims": [
        {"typ": "name", "val": "x"}]}).encode()).decode(), "object id"),
    ("A" * 70000, "longer than"),
])
def test_an_unreadable_header_says_why(header, text):
    with pytest.raises(ValueError, match=text):
        decode_client_principal(header)


def test_a_holder_of_the_role_is_verified_and_journalled_by_object_id_and_name():
    result = check(client_principal_header(ALICE))
    assert result.verdict is ApproverVerdict.VERIFIED and result.accepted
    assert (result.journal_principal, result.journal_name) == (ALICE.object_id, ALICE.name)


def test_a_client_supplied_header_is_ignored_when_platform_auth_is_not_enabled():
    # With auth off the platform passes the client's header through untouched.
    forged = headers_reaching_the_app({"x-ms-client-principal": client_principal_header(ALICE)},
                                      auth_enabled=False)
    result = check(forged["x-ms-client-principal"], auth=False)
    assert result.verdict is ApproverVerdict.AUTH_NOT_ENABLED and not result.accepted
    assert result.principal is None
    assert "not enabled" in result.reason and "ignored" in result.reason


def test_with_auth_on_the_platform_replaces_a_forged_header():
    forged = {"X-MS-CLIENT-PRINCIPAL": client_principal_header(ALICE)}
    seen = headers_reaching_the_app(forged, auth_enabled=True)
    assert "X-MS-CLIENT-PRINCIPAL" not in seen
    assert check(seen.get("X-MS-CLIENT-PRINCIPAL")).verdict is ApproverVerdict.NOT_SIGNED_IN
    seen = headers_reaching_the_app(forged, auth_enabled=True, signed_in=BOB)
    assert check(seen["X-MS-CLIENT-PRINCIPAL"]).verdict is ApproverVerdict.MISSING_ROLE


def test_a_principal_without_the_role_is_refused_with_a_clear_reason():
    result = check(client_principal_header(BOB))
    assert result.verdict is ApproverVerdict.MISSING_ROLE and not result.accepted
    assert result.reason.startswith(f"bob@contoso.com ({BOB.object_id}) does not hold the "
                                    f"app role {APPROVER_ROLE}")


def test_no_token_and_an_unreadable_header_are_refused():
    assert check(None).verdict is ApproverVerdict.NOT_SIGNED_IN
    assert "bearer token" in check(None).reason.lower()
    bad = check("garbage")
    assert bad.verdict is ApproverVerdict.UNREADABLE and "base64" in bad.reason


def test_key_only_approvals_only_with_the_setting():
    for auth in (False, True):
        assert not check(None, auth=auth).accepted
        lab = check(None, auth=auth, key_only=True)
        assert lab.verdict is ApproverVerdict.KEY_ONLY and lab.accepted
        assert lab.journal_principal == KEY_ONLY_PRINCIPAL
    # key-only still journals the verified caller when there is one
    lab = check(client_principal_header(BOB), key_only=True)
    assert lab.verdict is ApproverVerdict.KEY_ONLY and lab.journal_principal == BOB.object_id
    # ...but never a header the platform did not vouch for
    forged = check(client_principal_header(ALICE), auth=False, key_only=True)
    assert forged.verdict is ApproverVerdict.KEY_ONLY
    assert forged.journal_principal == KEY_ONLY_PRINCIPAL


@pytest.mark.parametrize("value,enabled", [
    ("True", True), ("TRUE", True), (" true ", True), ("False", False), ("", False),
    ("1", False), ("yes", False),  # .NET bool.TryParse accepts only true/false
])
def test_platform_auth_flag_is_read_as_the_host_reads_it(value, enabled):
    assert Settings.from_env({"WEBSITE_AUTH_ENABLED": value}).platform_auth_enabled is enabled


def test_defaults_trust_no_header_and_need_a_verified_approver():
    s = Settings.from_env({})
    assert s.platform_auth_enabled is False and s.allow_key_only_approvals is False
    assert Settings.from_env(host_environment(True)).platform_auth_enabled is True
    assert Settings.from_env({"HAIRPIN_ALLOW_KEY_ONLY_APPROVALS": "true"}).allow_key_only_approvals
