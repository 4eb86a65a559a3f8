//! The bot's own account and the start-up handshake with the homeserver.

use std::time::Duration;

use reqwest::StatusCode;
use ruma::OwnedUserId;
use ruma::api::client::account::{register, whoami};
use ruma::api::client::appservice::request_ping;
use ruma::api::client::device::{delete_device, get_device, get_devices};
use ruma::api::client::session::logout;
use ruma::api::error::{BadStatusErrorData, ErrorKind};

use super::{HomeserverClient, HsError, RetryPolicy};

/// How the start-up handshake went (also logged, in words).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupReport {
    pub bot_user_id: Option<OwnedUserId>,
    pub ping: PingOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PingOutcome {
    /// The homeserver reached our listener with the right hs_token.
    Ok { duration_ms: u64 },
    /// What is wrong, in words an operator can act on.
    Failed(String),
}

impl HomeserverClient {
    /// Registers the bot user through the appservice (`m.login.application_service`).
    /// Returns false when it already existed.
    pub async fn register_appservice_user(&self, localpart: &str) -> Result<bool, HsError> {
        let mut request = register::v3::Request::new();
        request.username = Some(localpart.to_owned());
        request.login_type = Some(register::LoginType::ApplicationService);
        request.inhibit_login = true;
        match self.call(request).await {
            Ok(_) => Ok(true),
            Err(error) if error.errcode() == Some("M_USER_IN_USE") => Ok(false),
            Err(error) => Err(error),
        }
    }

    pub async fn whoami(&self) -> Result<OwnedUserId, HsError> {
        Ok(self.call(whoami::v3::Request::new()).await?.user_id)
    }

    /// Asks the homeserver to call our `/ping` (spec v1.7): proves both tokens
    /// and that the homeserver can reach `appservice.address`.
    pub async fn ping_appservice(&self, appservice_id: &str) -> Result<u64, HsError> {
        let mut request = request_ping::v1::Request::new(appservice_id.to_owned());
        request.transaction_id = Some(format!("housekeep-ping-{}", crate::clock::now_ms()).into());
        Ok(self.call(request).await?.duration.as_millis() as u64)
    }

    /// Makes (or finds) a device of the appservice's own user with this ID
    /// (`PUT /_matrix/client/v3/devices/{id}` with the as_token: MSC4190,
    /// unconditional for appservices since Synapse 1.141).
    pub async fn create_device(&self, device_id: &str, display_name: &str) -> Result<(), HsError> {
        let body = serde_json::json!({"display_name": display_name});
        let segments = ["_matrix", "client", "v3", "devices", device_id];
        self.send::<_, serde_json::Value>(reqwest::Method::PUT, &segments, Some(&body)).await?;
        Ok(())
    }

    /// Whether the appservice's own user has a device with this ID.
    pub async fn device_exists(&self, device_id: &str) -> Result<bool, HsError> {
        match self.call(get_device::v3::Request::new(device_id.into())).await {
            Ok(_) => Ok(true),
            Err(error) if error.errcode() == Some("M_NOT_FOUND") => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// The IDs of the appservice's own user's devices.
    pub async fn own_devices(&self) -> Result<Vec<String>, HsError> {
        let devices = self.call(get_devices::v3::Request::new()).await?.devices;
        Ok(devices.into_iter().map(|device| device.device_id.to_string()).collect())
    }

    /// Deletes a device of the appservice's own user (no interactive
    /// authentication for an appservice since Synapse 1.141).
    pub async fn delete_device(&self, device_id: &str) -> Result<(), HsError> {
        self.call(delete_device::v3::Request::new(device_id.into())).await?;
        Ok(())
    }

    /// Revokes this client's own access token (`POST /_matrix/client/v3/logout`).
    pub async fn logout(&self) -> Result<(), HsError> {
        match self.call(logout::v3::Request::new()).await {
            Ok(_) => Ok(()),
            // Expired or revoked already: the goal is reached.
            Err(error) if error.errcode() == Some("M_UNKNOWN_TOKEN") => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Registers the bot (retrying while the homeserver is unreachable) and
    /// pings the appservice, logging plainly what is wrong if either fails.
    pub async fn startup_handshake(&self, appservice_id: &str, bot_localpart: &str, address: &str) -> StartupReport {
        let patient = self.clone().with_retry(RetryPolicy {
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_retries: None,
        });
        let bot_user_id = match patient.register_appservice_user(bot_localpart).await {
            Ok(created) => match self.whoami().await {
                Ok(user_id) => {
                    tracing::info!(%user_id, created, "bot user ready");
                    Some(user_id)
                }
                Err(error) => {
                    tracing::error!(%error, "bot user registered but whoami failed");
                    None
                }
            },
            Err(error) => {
                tracing::error!(%error, "cannot register the bot user: {}", explain_register_error(&error));
                None
            }
        };
        // A probe: its failures are configuration errors to report, not to wait out.
        let ping = match self.clone().with_retry(RetryPolicy::ONCE).ping_appservice(appservice_id).await {
            Ok(duration_ms) => {
                tracing::info!(duration_ms, "homeserver reached housekeep (appservice ping)");
                PingOutcome::Ok { duration_ms }
            }
            Err(error) => {
                let advice = explain_ping_error(&error, address);
                tracing::error!(%error, "appservice ping failed: {advice}");
                PingOutcome::Failed(advice)
            }
        };
        StartupReport { bot_user_id, ping }
    }
}

fn explain_register_error(error: &HsError) -> &'static str {
    match error.errcode() {
        Some("M_UNKNOWN_TOKEN" | "M_MISSING_TOKEN" | "M_FORBIDDEN") => {
            "the homeserver does not accept appservice.as_token: list the registration file in Synapse's \
             app_service_config_files, check that its tokens match this config, and restart Synapse"
        }
        Some("M_EXCLUSIVE") => {
            "the bot's user ID is outside the registration's user namespace, or another appservice claims it"
        }
        Some("M_INVALID_USERNAME") => "appservice.bot_localpart is not a valid username on this homeserver",
        _ => "see the error above",
    }
}

fn explain_ping_error(error: &HsError, address: &str) -> String {
    // M_BAD_STATUS: the homeserver reached housekeep, which answered `status`.
    if let HsError::Matrix { kind, .. } = error
        && let ErrorKind::BadStatus(BadStatusErrorData { status, .. }) = &**kind
    {
        let status = status.map_or(0, |status| status.as_u16());
        return if status == 401 || status == 403 {
            "the homeserver sent an hs_token housekeep does not know: the registration file and appservice.hs_token differ; \
             regenerate the registration and restart the homeserver"
                .to_owned()
        } else {
            format!("the homeserver reached housekeep but got HTTP {status}")
        };
    }
    match error {
        HsError::Matrix { errcode, .. } if errcode == "M_CONNECTION_FAILED" => format!(
            "the homeserver cannot reach housekeep at {address}: check appservice.address and that this listener is reachable from the homeserver"
        ),
        HsError::Matrix { status, .. } if *status == StatusCode::NOT_FOUND || *status == StatusCode::METHOD_NOT_ALLOWED => {
            "this homeserver does not support the appservice ping API (spec v1.7); skipping the check".to_owned()
        }
        HsError::Matrix { errcode, .. } if errcode == "M_FORBIDDEN" || errcode == "M_UNKNOWN_TOKEN" => {
            "the homeserver does not accept appservice.as_token for this appservice id: check appservice.id and the registration".to_owned()
        }
        _ => "the homeserver could not be asked to ping housekeep".to_owned(),
    }
}
