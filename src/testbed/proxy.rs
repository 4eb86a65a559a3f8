//! A load balancer as an operator puts in front of two housekeeps (an
//! active one and a standby): each new connection goes to the first
//! backend whose `/health` answers 200, checked every [`CHECK_EVERY`], as
//! HAProxy's `option httpchk GET /health` does. With no healthy backend a
//! connection is closed at once (Synapse retries the transaction).

use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How often each backend's `/health` is asked.
const CHECK_EVERY: Duration = Duration::from_millis(200);

pub struct HealthProxy {
    accept: tokio::task::JoinHandle<()>,
    check: tokio::task::JoinHandle<()>,
}

impl HealthProxy {
    /// Listens on `port` (local) and forwards to the healthy one of `backends` (local ports).
    pub async fn listen(port: u16, backends: Vec<u16>) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.context("cannot listen for the proxy")?;
        let (healthy, current) = watch::channel::<Option<u16>>(None);
        let check = tokio::spawn(async move {
            let http = super::http();
            loop {
                let mut up = None;
                for backend in &backends {
                    let url = format!("http://127.0.0.1:{backend}/health");
                    let answer = tokio::time::timeout(CHECK_EVERY, http.get(url).send()).await;
                    if matches!(answer, Ok(Ok(response)) if response.status().is_success()) {
                        up = Some(*backend);
                        break;
                    }
                }
                healthy.send_replace(up);
                tokio::time::sleep(CHECK_EVERY).await;
            }
        });
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { continue };
                let Some(backend) = *current.borrow() else { continue };
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", backend)).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
            }
        });
        Ok(Self { accept, check })
    }
}

impl Drop for HealthProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.check.abort();
    }
}
