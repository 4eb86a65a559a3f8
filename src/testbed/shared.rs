//! One Synapse for many tests: a Python homeserver takes seconds of CPU to
//! start, and most tests need nothing of it but "a Synapse with housekeep
//! registered". So a test process starts one Synapse with
//! [`TENANTS_PER_SYNAPSE`] appservice registrations (tenants), and each test
//! takes a tenant of its own, once: its own appservice ID, tokens, port and
//! bot, its own admin room alias, and users whose localparts all start with
//! the tenant's prefix (`t3-admin`, `t3-alice`). When the tenants run out,
//! the next test starts another Synapse.
//!
//! Nothing one test does reaches another: a tenant's registration claims its
//! users (`@t3-.*`) instead of every room (`!.*`, what operators register),
//! so Synapse sends a tenant only the events of rooms its own users are in.
//! A test that stops, reconfigures or reads the log of the homeserver, or
//! that needs the every-room registration (backfill of the whole server,
//! stats), starts a Synapse of its own (`Testbed::start_own`).
//!
//! The process ends with the test process: its launcher watches its parent
//! and removes its folder as it exits, unless a test failed ([`keep_logs`]).
//! The tenants' ports are picked when the Synapse starts and bound when a
//! test takes the tenant: another process could take one meanwhile (as with
//! any free port found in advance); that test then fails to start.

use std::path::{Path, PathBuf};

use anyhow::Context;
use ruma::api::appservice::Namespace;
use tokio::process::Child;
use tokio::sync::Mutex;

use super::{PLACEHOLDER_URL, Synapse, free_port, synapse, write_tenant_config};
use crate::registration;

/// Tenants one shared Synapse is started with. Registrations Synapse is
/// never sent anything for cost it nothing; each shared Synapse saves the
/// start of this many.
const TENANTS_PER_SYNAPSE: usize = 24;

/// What a tenant's config has for the database until a test takes it.
const DATABASE_PLACEHOLDER: &str = "sqlite://tenant-placeholder.db?mode=rwc";

/// The Synapse tenants are taken from now, and those started before (kept:
/// their tenants' tests may still run, and dropping one would kill it).
static SHARED: Mutex<Vec<Shared>> = Mutex::const_new(Vec::new());

struct Shared {
    url: String,
    port: u16,
    dir: PathBuf,
    /// Tenants no test has taken yet.
    free: Vec<Tenant>,
    _process: Child,
}

/// One appservice registration of a shared Synapse, for one test.
pub(super) struct Tenant {
    /// Before each of its users' localparts.
    pub prefix: String,
    /// housekeep's config for it, with [`DATABASE_PLACEHOLDER`] as the database.
    config: String,
}

impl Tenant {
    /// The tenant's config with `database_url` as its database.
    pub fn config(&self, database_url: &str) -> String {
        self.config.replace(DATABASE_PLACEHOLDER, database_url)
    }
}

/// A tenant no other test has had, and a handle on its Synapse (which
/// registers users with the tenant's prefix).
pub(super) async fn take_tenant() -> anyhow::Result<(Synapse, Tenant)> {
    let mut shared = SHARED.lock().await;
    if shared.last().is_none_or(|last| last.free.is_empty()) {
        let generation = shared.len();
        shared.push(Shared::start(generation).await?);
    }
    let current = shared.last_mut().expect("just pushed");
    let tenant = current.free.pop().expect("not empty");
    Ok((Synapse::tenant(&current.url, &current.dir, current.port, &tenant.prefix), tenant))
}

impl Shared {
    async fn start(generation: usize) -> anyhow::Result<Self> {
        let folder = tempfile::Builder::new().prefix("housekeep-shared-synapse-").tempdir()?;
        let dir = folder.path().to_owned();
        let mut tenants = Vec::new();
        let mut registrations = Vec::new();
        for n in 0..TENANTS_PER_SYNAPSE {
            let prefix = format!("t{generation}x{n}-");
            let tenant_dir = dir.join(format!("tenant-{n}"));
            std::fs::create_dir_all(&tenant_dir)?;
            let (config_path, config, _) =
                write_tenant_config(&tenant_dir, PLACEHOLDER_URL, DATABASE_PLACEHOLDER, &prefix)?;
            let registration_path = tenant_dir.join("registration.yaml");
            std::fs::write(&registration_path, tenant_registration(&config, &prefix)?)?;
            registrations.push(registration_path);
            tenants.push((prefix, std::fs::read_to_string(config_path)?));
        }
        let port = free_port()?;
        let registrations: Vec<&Path> = registrations.iter().map(PathBuf::as_path).collect();
        // From here the launcher removes the folder when it exits (a
        // Synapse that fails to start keeps it, for its log).
        let _ = folder.keep();
        let process =
            synapse::spawn(&dir, &registrations, port, "", true).await.context("the shared Synapse did not start")?;
        let url = format!("http://127.0.0.1:{port}");
        let free = tenants
            .into_iter()
            .map(|(prefix, config)| Tenant { prefix, config: config.replace(PLACEHOLDER_URL, &url) })
            .collect();
        Ok(Self { url, port, dir, free, _process: process })
    }
}

/// Keeps the folders (Synapse's log) of the shared Synapses this process
/// started, and names them: for a run with failed tests.
pub async fn keep_logs() {
    for shared in SHARED.lock().await.iter() {
        if std::fs::write(shared.dir.join("keep"), "").is_ok() {
            eprintln!("shared Synapse kept for its log: {}", shared.dir.display());
        }
    }
}

/// housekeep's registration for `config`, but claiming the tenant's users
/// (non-exclusively) instead of every room: Synapse then sends it the events
/// of every room one of them is in, and nothing of other tenants' rooms.
fn tenant_registration(config: &crate::config::Config, prefix: &str) -> anyhow::Result<String> {
    let mut registration = registration::registration(config);
    registration.namespaces.rooms.clear();
    let users = format!("@{}.*:{}", regex::escape(prefix), regex::escape(config.homeserver.domain.as_str()));
    registration.namespaces.users.push(Namespace::new(false, users));
    registration::to_yaml(&registration)
}
