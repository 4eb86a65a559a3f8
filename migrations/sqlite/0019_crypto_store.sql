-- The bot device's end-to-end encryption state (issue 35): its account
-- (identity keys), Olm and Megolm sessions, the devices and identities it
-- knows. One row a thing, keyed by what kind of thing it is and its ID;
-- values are matrix-sdk-crypto's own pickles as JSON (see src/store/crypto.rs).
CREATE TABLE crypto_store (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (kind, key)
);
