"""Event Grid subscription system-topic events for the writes the emulator serves.

Shape of `Microsoft.Resources.Resource{Write,Delete,Action}{Success,Failure}` (Event Grid schema,
dataVersion 2): `subject` = the resource ID, `data.operationName` = the RBAC action,
`data.claims` / `data.authorization` name the caller. GETs make no events, as in Azure.
"""

from __future__ import annotations

import datetime as dt
import uuid

OID_CLAIM = "http://schemas.microsoft.com/identity/claims/objectidentifier"
KIND = {"PUT": "Write", "PATCH": "Write", "DELETE": "Delete", "POST": "Action"}


def make_event(method, resource_id, action, ok, subscription, identity, correlation_id) -> dict:
    now = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    outcome = "Success" if ok else "Failure"
    ns = resource_id.split("/providers/")[-1].split("/")[0] if "/providers/" in resource_id else ""
    return {
        "id": str(uuid.uuid4()),
        "topic": f"/subscriptions/{subscription}",
        "subject": resource_id,
        "eventType": f"Microsoft.Resources.Resource{KIND.get(method, 'Action')}{outcome}",
        "eventTime": now,
        "dataVersion": "2",
        "metadataVersion": "1",
        "data": {
            "operationName": action,
            "status": "Succeeded" if ok else "Failed",
            "resourceProvider": ns,
            "resourceUri": resource_id,
            "subscriptionId": subscription,
            "tenantId": identity.tenant_id,
            "correlationId": correlation_id,
            "httpRequest": {"method": method, "clientIpAddress": "127.0.0.1"},
            "claims": {
                "aud": "https://management.azure.com",
                "appid": identity.client_id,
                "oid": identity.principal_id,
                OID_CLAIM: identity.principal_id,
                "xms_mirid": identity.name,
            },
            "authorization": {
                "scope": resource_id,
                "action": action,
                "evidence": {
                    "principalId": identity.principal_id,
                    "principalType": "ServicePrincipal",
                    "role": "emulator",
                },
            },
        },
    }
