//! The hash of each reference's mxc URI (`media_refs.uri_sha256`), for
//! policy rules that name media only by that hash (MSC4207's media rules,
//! hashed as MSC4205 hashes an entity): resolved through an index to the
//! media indexed, never by hashing every known URI.

use sha2::{Digest, Sha256};

use super::media::MediaId;
use super::{Backend, Store};
use crate::extract::MXC_PREFIX;

/// References not hashed yet (indexed before migration 0014), through the
/// index `media_refs_uri_sha256`, whose NULLs sort first. Not `DISTINCT`:
/// PostgreSQL may plan that as a hash aggregate, which reads every NULL row
/// before it returns any; duplicates are dropped in Rust instead.
const SELECT_UNHASHED: &str = "SELECT server_name, media_id FROM media_refs WHERE uri_sha256 IS NULL LIMIT $1";
/// Fills the hashes of the media in `$1`, a JSON array of `{n, i, h}`
/// (server, media ID, hash), probing the primary key per media. The `+`
/// keeps SQLite's planner off the `uri_sha256` index for `IS NULL` (with no
/// statistics it picked it and read `$1` once per NULL row of the table).
const HASH_SQLITE: &str = "UPDATE media_refs SET uri_sha256 = j.value ->> 'h' FROM json_each($1) AS j \
     WHERE media_refs.server_name = j.value ->> 'n' AND media_refs.media_id = j.value ->> 'i' \
     AND +media_refs.uri_sha256 IS NULL";
const HASH_POSTGRES: &str = "UPDATE media_refs r SET uri_sha256 = j.h \
     FROM json_to_recordset($1::json) AS j(n text, i text, h text) \
     WHERE r.server_name = j.n AND r.media_id = j.i AND r.uri_sha256 IS NULL";
/// A hash names one URI, so one media: the limit bounds the references
/// read (a media posted 100,000 times would otherwise be read as often to
/// find its one name), not the answer.
const SELECT_BY_URI_HASH: &str = "SELECT DISTINCT server_name, media_id FROM \
     (SELECT server_name, media_id FROM media_refs WHERE uri_sha256 = $1 LIMIT 100) AS r \
     ORDER BY server_name, media_id";

/// An mxc URI's hash as policy rules write it: standard base64, padded,
/// of the SHA-256 of `mxc://server/id` (`crate::policy::sha256_base64` of
/// `crate::policy::sha256_of` the URI, which a test holds it to). 44 ASCII
/// bytes kept inline: every reference the index writes computes one, with
/// no allocation of its own (no URI string, no base64 string).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct UriHash([u8; 44]);

impl UriHash {
    pub fn of(server_name: &str, media_id: &str) -> Self {
        // The URI fed in pieces is the same digest, without building it.
        let digest: [u8; 32] = Sha256::new()
            .chain_update(MXC_PREFIX)
            .chain_update(server_name)
            .chain_update("/")
            .chain_update(media_id)
            .finalize()
            .into();
        Self(base64_padded(&digest))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("base64 is ASCII")
    }
}

impl std::fmt::Debug for UriHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for UriHash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Standard base64 with its padding, of 32 bytes: ten groups of three
/// bytes make 40 characters, the last two bytes three more and one `=`.
fn base64_padded(bytes: &[u8; 32]) -> [u8; 44] {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = [b'='; 44];
    for (group, chunk) in bytes.chunks(3).enumerate() {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let bits = byte(0) << 16 | byte(1) << 8 | byte(2);
        // n bytes are n + 1 characters; the rest of a short group is padding.
        for i in 0..=chunk.len() {
            out[group * 4 + i] = ALPHABET[(bits >> (18 - 6 * i) & 63) as usize];
        }
    }
    out
}

/// A media of [`HASH_SQLITE`] / [`HASH_POSTGRES`]'s `$1`.
#[derive(serde::Serialize)]
struct Hashed<'a> {
    n: &'a str,
    i: &'a str,
    h: UriHash,
}

impl Store {
    /// Fills the URI hash of references indexed before housekeep kept it:
    /// the media of up to `batch` of them, every reference of each. Returns
    /// the references updated; 0 once none is left. One statement per call,
    /// as a bulk write (it queues behind the SQLite checkpointer as the
    /// index's own writes do).
    pub async fn hash_known_media_uris(&self, batch: i64) -> anyhow::Result<u64> {
        let mut media: Vec<MediaId> = sqlx::query_as(SELECT_UNHASHED).bind(batch).fetch_all(&self.pool).await?;
        if media.is_empty() {
            return Ok(0);
        }
        media.sort_unstable();
        media.dedup();
        let hashed: Vec<Hashed> = media
            .iter()
            .map(|m| Hashed { n: &m.server_name, i: &m.media_id, h: UriHash::of(&m.server_name, &m.media_id) })
            .collect();
        let sql = match self.backend {
            Backend::Sqlite => HASH_SQLITE,
            Backend::Postgres => HASH_POSTGRES,
        };
        let (_gate, mut tx) = self.begin_bulk_write().await?;
        let updated = sqlx::query(sql).bind(serde_json::to_string(&hashed)?).execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(updated)
    }

    /// The media whose mxc URI hashes to `sha256_b64`, in the form
    /// [`UriHash`] stores (padded standard base64: callers normalise what
    /// a rule carries). Through the index `media_refs_uri_sha256`.
    pub async fn media_by_uri_hash(&self, sha256_b64: &str) -> anyhow::Result<Vec<MediaId>> {
        Ok(sqlx::query_as(SELECT_BY_URI_HASH).bind(sha256_b64).fetch_all(&self.pool).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{sha256_base64, sha256_of};

    #[test]
    fn the_hash_is_the_policy_form_of_the_whole_uri() {
        // MSC4207's example.
        assert_eq!(UriHash::of("example.com", "0").as_str(), "ZDSM130dcJ578ANfiJxoN5Nle2+c5uEkDuHHduxj6AM=");
        for (server, id) in [("hs", "one"), ("example.org:8448", "AbC-_x"), ("[::1]", ""), ("é.example", "Ü")] {
            let uri = format!("mxc://{server}/{id}");
            assert_eq!(UriHash::of(server, id).as_str(), sha256_base64(&sha256_of(&uri)), "{uri}");
        }
        // Every byte value in every place of a group, and in the short last one.
        for n in 0..=255u8 {
            let bytes: [u8; 32] = std::array::from_fn(|i| n.wrapping_add(7 * i as u8));
            assert_eq!(std::str::from_utf8(&base64_padded(&bytes)).unwrap(), sha256_base64(&bytes));
        }
    }

    #[test]
    fn it_travels_as_a_json_string() {
        let hash = UriHash::of("example.com", "0");
        assert_eq!(serde_json::to_string(&hash).unwrap(), "\"ZDSM130dcJ578ANfiJxoN5Nle2+c5uEkDuHHduxj6AM=\"");
    }
}
