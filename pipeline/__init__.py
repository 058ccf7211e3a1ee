"""pageray's pipeline. The base layer is here: `config` (the run's validated config),
`datamodel` (the page row and statuses), `errors` (what stops a run), `storage` (listing and
reading inputs), `run` (the Ray driver), `cli`, and the demo. The layers above it:
`render/` (documents to page images), `ledger/` (exactly-once and incremental output),
`bench/` (the throughput benchmark). The model side is in the top-level `extractors/`."""
