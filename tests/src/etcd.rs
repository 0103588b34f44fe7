//! etcd from Debian's `etcd-server`, on loopback.

use std::{ffi::OsString, path::PathBuf, time::Duration};

use crate::process::{Server, free_port, program};

/// A single-member etcd cluster on 127.0.0.1, stopped on drop.
///
/// Its data lives in its own folder, so [`kill`](Etcd::kill) and
/// [`restart`](Etcd::restart) keep every key and revision.
#[derive(Debug)]
pub struct Etcd {
    server: Server,
    client_port: u16,
}

impl Etcd {
    /// Starts Debian's etcd and waits until it answers.
    pub async fn start() -> Self {
        Self::start_program(program("etcd", "apt-get install etcd-server")).await
    }

    /// Starts the etcd binary at `etcd` and waits until it answers.
    pub async fn start_program(etcd: PathBuf) -> Self {
        let dir = Server::make_dir("etcd");
        let (client_port, peer_port) = (free_port(), free_port());
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let args: Vec<OsString> = [
            "--name=lock-tests".to_owned(),
            format!("--data-dir={}", dir.join("data").display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster=lock-tests={peer}"),
            "--listen-metrics-urls=".to_owned(),
            "--logger=zap".to_owned(),
            "--log-level=warn".to_owned(),
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        let etcd = Self {
            server: Server::spawn("etcd", etcd, args, dir),
            client_port,
        };
        etcd.wait_until_ready().await;
        etcd
    }

    async fn wait_until_ready(&self) {
        let url = self.url();
        self.server
            .wait_until_ready(Duration::from_secs(30), || async {
                match etcd_client::Client::connect([url.as_str()], None).await {
                    Ok(mut client) => client.status().await.is_ok(),
                    Err(_) => false,
                }
            })
            .await;
    }

    /// The client URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.client_port
    }

    /// A client connected to this etcd.
    pub async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect([self.url()], None)
            .await
            .unwrap_or_else(|error| panic!("cannot connect to etcd at {}: {error}", self.url()))
    }

    /// The server process, for pausing and resuming.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Kills etcd with SIGKILL; its data stays for [`restart`](Etcd::restart).
    pub fn kill(&mut self) {
        self.server.kill();
    }

    /// Starts etcd again on the same data and port, and waits until it answers.
    pub async fn restart(&mut self) {
        self.server.restart();
        self.wait_until_ready().await;
    }
}
