-- Each reference's mxc URI hashed as MSC4205/MSC4207 policy rules hash an
-- entity: standard base64, padded (44 characters), of the SHA-256 of the
-- whole URI's UTF-8 (`mxc://server/id`). A media rule that names its URI
-- only by hash is resolved to the media indexed here through the index,
-- never by hashing every known URI (src/store/uri_hash.rs).
-- The index writes fill it (src/store/events.rs). Rows indexed before this
-- migration are NULL until Store::hash_known_media_uris fills them in the
-- background after start-up.
-- The index is on every row, not only `WHERE uri_sha256 IS NOT NULL`: the
-- background fill finds the NULL rows through it (NULLs sort first) in
-- batches, where without it each batch would scan the table past the rows
-- already hashed (quadratic over a large index). Once filled no row is NULL,
-- so a partial index would save nothing after that.
ALTER TABLE media_refs ADD COLUMN uri_sha256 TEXT;
CREATE INDEX media_refs_uri_sha256 ON media_refs (uri_sha256);
