"""Development, demo and test scaffolding for cdc-repair, kept out of the product package `cdc_repair`.

Shipped in the same distribution (so `cdc-repair demo` and `cdc-repair dev ...` work from a checkout or a
wheel), but nothing in `cdc_repair` imports it except those two commands, lazily; the Docker image copies only
`cdc_repair/`. Here: the embedded MariaDB and broker (`devservices/`), the pytest fixtures that start them, the
demo, its webook workload, the daemon-as-subprocess harness, a whole-topic reader for audits and an example
status document. See docs/architecture.md.
"""
