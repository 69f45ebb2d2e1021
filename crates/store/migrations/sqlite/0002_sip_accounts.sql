-- SIP accounts of custom registrars. The password is stored encrypted by the server
-- (ChaCha20-Poly1305, key from the data dir or the environment): the store never sees it in clear.
CREATE TABLE sip_accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    registrar_id BIGINT NOT NULL REFERENCES registrars(id) ON DELETE CASCADE,
    username TEXT NOT NULL,
    password_enc TEXT NOT NULL,
    realm TEXT,
    extension TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (registrar_id, username)
);
