//! Synapse servers whose history was written once and kept in the cache
//! folder (`<cache>/bench-fixtures/synapse-<version>/<name>/`: a database
//! written by one Synapse is never opened by an older one), for benchmarks
//! that need more history than is worth writing again each run: Synapse
//! writes about 80 events/s on this machine, so a server of 20,000 events
//! takes minutes and a room of 100,000 half an hour.
//!
//! A fixture is written as synapse-notes §10 says a server with a bridge
//! is: Synapse runs with another, silent appservice registered while the
//! history is written, so once housekeep's registration is added Synapse
//! sends it none of that history and only backfill brings it in. It is
//! never started in place: [`Testbed::start_from_fixture`] starts a fresh
//! copy, so every run begins from the same server.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{MatrixUser, SYNAPSE_VERSION, Synapse, cache_dir, write_silent_registration};

/// The file that says a fixture is whole; written last, before the rename.
const META: &str = "fixture.json";

/// A Synapse written once: its folder in the cache, the server admin who
/// wrote it, and what the writer said about it.
#[derive(Debug, Clone)]
pub struct SynapseFixture<T> {
    /// `<cache>/bench-fixtures/synapse-<version>/<name>`: `synapse/` (its database, media
    /// store and config) and the other appservice's registration.
    pub dir: PathBuf,
    pub admin_user_id: String,
    pub admin_token: String,
    /// How long writing it took.
    pub written_in: Duration,
    pub data: T,
}

#[derive(Serialize, Deserialize)]
struct Meta<T> {
    admin_user_id: String,
    admin_token: String,
    written_in_secs: f64,
    data: T,
}

impl<T: Serialize + DeserializeOwned> SynapseFixture<T> {
    /// The fixture `name` from the cache, or, the first time, written by
    /// `write` (run as `@admin:localhost`, a server admin, before housekeep's
    /// registration exists) and kept. `name` must change whenever what
    /// `write` writes does: name it by its parameters and a version.
    /// A file lock keeps two processes from writing the same fixture; a
    /// write that was interrupted is started over.
    pub async fn cached(
        name: &str,
        write: impl AsyncFnOnce(&Synapse, &MatrixUser) -> anyhow::Result<T>,
    ) -> anyhow::Result<Self> {
        let root = cache_dir().join("bench-fixtures").join(format!("synapse-{SYNAPSE_VERSION}"));
        let dir = root.join(name);
        if let Some(fixture) = Self::read(&dir)? {
            return Ok(fixture);
        }
        std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
        let lock_path = root.join(format!("{name}.lock"));
        // Held until this function returns: another process waits here, then reads what this one wrote.
        let _lock = tokio::task::spawn_blocking(move || -> anyhow::Result<std::fs::File> {
            let lock = std::fs::File::create(&lock_path)?;
            lock.lock()?;
            Ok(lock)
        })
        .await??;
        if let Some(fixture) = Self::read(&dir)? {
            return Ok(fixture);
        }
        let partial = root.join(format!("{name}.partial"));
        if partial.exists() {
            std::fs::remove_dir_all(&partial)?;
        }
        std::fs::create_dir_all(&partial)?;
        eprintln!("writing the Synapse fixture {} (once; it is kept)", dir.display());
        let started = Instant::now();
        let other = write_silent_registration(&partial)?;
        let synapse = Synapse::start_registrations(&partial.join("synapse"), &[&other]).await?;
        let admin = synapse.register_user("admin", true).await?;
        let data = write(&synapse, &admin).await?;
        synapse.stop().await?;
        let written_in = started.elapsed();
        // Its log is the writer's, not the fixture's: each copy logs anew.
        for log in ["homeserver.log", "stderr.log"] {
            let _ = std::fs::remove_file(partial.join("synapse").join(log));
        }
        let meta = Meta {
            admin_user_id: admin.user_id.clone(),
            admin_token: admin.access_token.clone(),
            written_in_secs: written_in.as_secs_f64(),
            data,
        };
        std::fs::write(partial.join(META), serde_json::to_vec_pretty(&meta)?)?;
        std::fs::rename(&partial, &dir)?;
        Self::read(&dir)?.context("the fixture just written cannot be read")
    }

    fn read(dir: &Path) -> anyhow::Result<Option<Self>> {
        let path = dir.join(META);
        if !path.exists() {
            return Ok(None);
        }
        let meta: Meta<T> = serde_json::from_slice(&std::fs::read(&path)?)
            .with_context(|| format!("{} is not a fixture of this version: delete the folder", path.display()))?;
        Ok(Some(Self {
            dir: dir.to_owned(),
            admin_user_id: meta.admin_user_id,
            admin_token: meta.admin_token,
            written_in: Duration::from_secs_f64(meta.written_in_secs),
            data: meta.data,
        }))
    }
}

impl<T> SynapseFixture<T> {
    /// Copies the fixture's Synapse folder to `to` (which must not exist).
    pub async fn copy_synapse_to(&self, to: &Path) -> anyhow::Result<()> {
        let (from, to) = (self.dir.join("synapse"), to.to_owned());
        tokio::task::spawn_blocking(move || copy_dir(&from, &to)).await?
    }
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("cannot copy {} to {}", entry.path().display(), target.display()))?;
        }
    }
    Ok(())
}
