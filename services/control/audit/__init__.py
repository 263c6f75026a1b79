"""The control commission's audit store: a tamper-evident, append-only Merkle log of every
decision (`kalo.audit`), with signed tree heads published outside the database.

    merkle.py    RFC 9162 §2.1: leaf and node hashes, MTH, PATH, PROOF and their verification
    heads.py     signed tree heads (Ed25519 over RFC 9162 TreeHeadDataV2), keys
    records.py   a record: the RFC 8785 canonical JSON of one audit event
    handlers.py  the store's decisions (append, sign), on a port
    adapters.py  the port on PostgreSQL (schema audit), heads out to Kafka and the heads file
    app.py       `kalo run audit`
    verify.py    the auditor's checks (trusting only the public key); auditor.py runs them on the store
"""
