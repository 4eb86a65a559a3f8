//! A TCP link a test can cut and restore: a database (or any server) that
//! becomes unreachable mid-stream. Cutting drops every open connection and
//! refuses new ones until restored.

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct CuttableLink {
    pub port: u16,
    cut: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl CuttableLink {
    /// Listens on a free local port and forwards each connection to `target` (`host:port`).
    pub async fn to(target: String) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.context("cannot listen for the link")?;
        let port = listener.local_addr()?.port();
        let (cut, is_cut) = watch::channel(false);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { continue };
                if *is_cut.borrow() {
                    continue; // dropped: closed at once
                }
                let (mut is_cut, target) = (is_cut.clone(), target.clone());
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = is_cut.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Ok(Self { port, cut, accept })
    }

    /// Drops every connection; new ones are closed as they come.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for CuttableLink {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
