"""Storage adapters (Azure Blob and Table storage; Azurite locally).

- `journal.Journal`: the append-only journal (Table) and open records such as "deallocated by
  us" and "verified routes";
- `locks.LockManager`: per-pool and per-VM locks held as renewed Blob leases;
- `reports.ReportStore`: audit reports and sweep summaries under dated paths with an index,
  and ETag-guarded checkpoints for resumable sweeps;
- `clients.StorageClients`: the Blob/Table service clients from a connection string or from
  a managed identity and account URLs.

They take SDK clients (or a connection string) and never know whether they talk to Azure or to
Azurite. Call `ensure()` once to create the container or tables they use.
"""
