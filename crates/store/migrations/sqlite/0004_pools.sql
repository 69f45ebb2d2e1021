-- Account pools: named sets of a registrar's SIP accounts that tests draw from with a rotation
-- strategy. `next_index` is the round-robin position carried across runs; `last_used_at` on
-- accounts serves least-recently-used.
CREATE TABLE account_pools (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    registrar_id BIGINT NOT NULL REFERENCES registrars(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    strategy TEXT NOT NULL,
    next_index BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    UNIQUE (registrar_id, name)
);
CREATE TABLE pool_accounts (
    pool_id BIGINT NOT NULL REFERENCES account_pools(id) ON DELETE CASCADE,
    account_id BIGINT NOT NULL REFERENCES sip_accounts(id) ON DELETE CASCADE,
    PRIMARY KEY (pool_id, account_id)
);
ALTER TABLE sip_accounts ADD COLUMN last_used_at BIGINT;
