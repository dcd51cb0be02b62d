//! Local ports forwarded over a host's master connection (for `http`
//! steps with `via:`): one per target and connection, opened on first use.
//! Takes the connection from [`super::host`]; nothing takes from it but the
//! pool.

use std::collections::HashMap;

use tokio::sync::Mutex;

use super::connection::SshError;
use super::host::Host;

/// The local port forwarded to each target (host, port).
type Ports = HashMap<(String, u16), u16>;

/// The forwards open over one host's current connection.
#[derive(Default)]
pub struct Forwards {
    /// The connection they belong to (a new one has none yet), and their
    /// ports.
    open: Mutex<(u64, Ports)>,
}

impl Forwards {
    /// A local port forwarded over the host's master to
    /// `remote_host:remote_port` as the host sees it.
    pub async fn forward(
        &self,
        host: &Host,
        remote_host: &str,
        remote_port: u16,
    ) -> Result<u16, SshError> {
        let mut session = host.session().await?;
        if session.check().await.is_err() {
            // The master idled out (no session for the idle time) or died:
            // its forwards went with it.
            host.forget(&session).await;
            session = host.session().await?;
        }
        let mut open = self.open.lock().await;
        if open.0 != host.connection() {
            *open = (host.connection(), HashMap::new());
        }
        let key = (remote_host.to_string(), remote_port);
        if let Some(port) = open.1.get(&key) {
            return Ok(*port);
        }
        let local =
            free_port().map_err(|e| SshError(format!("cannot find a free local port: {e}")))?;
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], local));
        let connect = openssh::Socket::TcpSocket {
            host: remote_host.to_string().into(),
            port: remote_port,
        };
        session
            .request_port_forward(openssh::ForwardType::Local, listen, connect)
            .await
            .map_err(|e| {
                SshError(format!(
                    "cannot forward a port over {} to {remote_host}:{remote_port}: {e}",
                    host.describe()
                ))
            })?;
        open.1.insert(key, local);
        Ok(local)
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
