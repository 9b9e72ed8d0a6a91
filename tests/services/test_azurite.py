"""Azurite starts from the test setup; a blob and a table round-trip through the real SDKs."""

import pytest
from azure.core.exceptions import ResourceExistsError

pytestmark = pytest.mark.azurite


def test_blob_round_trip(storage_ns):
    service = storage_ns.blob_service()
    container = service.create_container(storage_ns.container("roundtrip"))
    blob = container.get_blob_client("dir/hello.json")
    blob.upload_blob(b'{"hello": "world"}', metadata={"kind": "test"})

    assert blob.download_blob().readall() == b'{"hello": "world"}'
    assert blob.get_blob_properties().metadata == {"kind": "test"}
    assert [b.name for b in container.list_blobs(name_starts_with="dir/")] == ["dir/hello.json"]


def test_table_round_trip(storage_ns):
    service = storage_ns.table_service()
    table = service.create_table(storage_ns.table("roundtrip"))
    table.create_entity({"PartitionKey": "p", "RowKey": "r1", "n": 1, "s": "text"})
    with pytest.raises(ResourceExistsError):  # create never overwrites
        table.create_entity({"PartitionKey": "p", "RowKey": "r1", "n": 2})

    got = table.get_entity("p", "r1")
    assert (got["n"], got["s"]) == (1, "text")
    assert [e["RowKey"] for e in table.query_entities("PartitionKey eq 'p'")] == ["r1"]


def test_namespaces_are_unique(azurite, storage_ns):
    assert storage_ns.container("x").startswith(storage_ns.prefix)
    assert storage_ns.table("a-b_c") == storage_ns.prefix + "abc"
    assert "devstoreaccount1" in azurite.connection_string
    assert azurite.blob_endpoint.startswith("http://127.0.0.1:")


def test_clients_from_connection_string_or_account_url(azurite, storage_ns):
    from azure.core.credentials import AzureNamedKeyCredential

    from shared.storage.clients import StorageClients
    from tests.support.fixtures_azurite import ACCOUNT_KEY, ACCOUNT_NAME

    by_string = StorageClients.from_env({"AzureWebJobsStorage": azurite.connection_string})
    # the identity path (account URLs + a credential object), here with the account key
    by_url = StorageClients.from_account(azurite.blob_endpoint, azurite.table_endpoint,
                                         AzureNamedKeyCredential(ACCOUNT_NAME, ACCOUNT_KEY))
    name = storage_ns.container("clients")
    by_string.blob.create_container(name)
    assert [c.name for c in by_url.blob.list_containers(name_starts_with=name)] == [name]
    by_url.table.create_table(storage_ns.table("clients"))
    assert storage_ns.table("clients") in {t.name for t in by_string.table.list_tables()}


def test_clients_from_identity_settings():
    from shared.storage.clients import StorageClients

    # Functions' identity-based connection; DefaultAzureCredential asks for no token until used
    clients = StorageClients.from_env({"AzureWebJobsStorage__accountName": "hairpinsa",
                                       "AzureWebJobsStorage__clientId": "client-id"})
    assert clients.blob.url.startswith("https://hairpinsa.blob.core.windows.net")
    assert clients.table.url.startswith("https://hairpinsa.table.core.windows.net")
    with pytest.raises(ValueError, match="AzureWebJobsStorage"):
        StorageClients.from_env({})


def test_context_takes_storage_from_the_identity_based_setting(azurite, storage_ns):
    """In Azure the template disables shared keys and sets AzureWebJobsStorage__accountName /
    __blobServiceUri ...: the services must still get their journal, locks and reports."""
    from azure.core.credentials import AzureNamedKeyCredential

    from shared.services.context import ServiceContext, build_context
    from shared.settings import Settings
    from shared.storage.clients import StorageClients
    from tests.support.fixtures_azurite import ACCOUNT_KEY, ACCOUNT_NAME

    env = {"AzureWebJobsStorage__blobServiceUri": azurite.blob_endpoint,
           "AzureWebJobsStorage__tableServiceUri": azurite.table_endpoint,
           "AzureWebJobsStorage__queueServiceUri": azurite.queue_endpoint}
    assert StorageClients.configured_in(env) and not StorageClients.configured_in({})
    settings = Settings(storage_prefix=storage_ns.prefix)
    storage = StorageClients.from_env(
        env, credential=AzureNamedKeyCredential(ACCOUNT_NAME, ACCOUNT_KEY))
    ctx = ServiceContext(settings).attach_storage(storage)
    assert ctx.journal and ctx.locks and ctx.reports and ctx.storage.queue is not None
    assert storage_ns.container("locks") in [c.name for c in storage.blob.list_containers()]
    # Without any storage setting the context has none (and says so where it matters).
    assert build_context(Settings(), environ={}).journal is None
