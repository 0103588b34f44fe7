//! etcd from Debian's `etcd-server`, on loopback: plain, or secured with TLS, client
//! certificates and password authentication.

use std::{ffi::OsString, path::PathBuf};

use etcd_client::{Certificate, ConnectOptions, Identity, PutOptions, TlsOptions};

use crate::{
    certificates::Certificates,
    process::{Served, Server, free_port, program},
};

/// A single-member etcd cluster on 127.0.0.1, stopped on drop.
///
/// Its data lives in its own folder, so [`kill`](Served::kill) and
/// [`restart`](Served::restart) keep every key and revision.
#[derive(Debug)]
pub struct Etcd {
    server: Server,
    client_port: u16,
    secure: Option<Secure>,
}

/// How a secured etcd is reached: over TLS with a certificate signed by its CA, as the
/// user `root` with a password.
#[derive(Clone, Debug)]
pub struct Secure {
    /// The CA (`ca.crt`), and the client certificate (`client.crt`, `client.key`, its
    /// common name `root`).
    pub certificates: Certificates,
    /// The user with every right.
    pub user: &'static str,
    /// Its password.
    pub password: &'static str,
}

/// The member name of the etcd listening on `client_port`, to tell it from any other.
fn member_name(client_port: u16) -> String {
    format!("lock-tests-{client_port}")
}

impl Etcd {
    /// One etcd for the whole test binary, started by the first test that asks. Clients
    /// are made per call, so each test's runtime owns its connections.
    pub async fn shared() -> &'static Etcd {
        static SHARED: tokio::sync::OnceCell<Etcd> = tokio::sync::OnceCell::const_new();
        SHARED.get_or_init(Self::start).await
    }

    /// Starts Debian's etcd and waits until it answers.
    pub async fn start() -> Self {
        Self::start_program(program("etcd", "apt-get install etcd-server")).await
    }

    /// Starts the etcd binary at `etcd` and waits until it answers.
    pub async fn start_program(etcd: PathBuf) -> Self {
        Self::spawn(etcd, false).await
    }

    /// Starts Debian's etcd secured: clients must speak TLS, present a certificate
    /// signed by its CA, and authenticate (auth is enabled, user `root`). See
    /// [`secure`](Etcd::secure) for the files and credentials.
    pub async fn start_secure() -> Self {
        let etcd = Self::spawn(program("etcd", "apt-get install etcd-server"), true).await;
        let mut client = etcd.connect(false).await;
        let secure = etcd.secure.clone().expect("secured");
        let enabled = async {
            client.role_add("root").await?;
            client.user_add(secure.user, secure.password, None).await?;
            client.user_grant_role(secure.user, "root").await?;
            client.auth_enable().await
        };
        if let Err(error) = enabled.await {
            panic!("cannot enable authentication on etcd: {error}");
        }
        etcd
    }

    async fn spawn(etcd: PathBuf, secured: bool) -> Self {
        let dir = Server::make_dir("etcd");
        let (client_port, peer_port) = (free_port(), free_port());
        let secure = secured.then(|| Secure {
            certificates: Certificates::make(&dir, "root"),
            user: "root",
            password: "lock-tests-etcd-password",
        });
        let scheme = if secured { "https" } else { "http" };
        let client = format!("{scheme}://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let mut args = vec![
            format!("--name={}", member_name(client_port)),
            format!("--data-dir={}", dir.join("data").display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster={}={peer}", member_name(client_port)),
            "--listen-metrics-urls=".to_owned(),
            "--logger=zap".to_owned(),
            "--log-level=warn".to_owned(),
        ];
        if let Some(secure) = &secure {
            let file = |name: &str| secure.certificates.file(name).display().to_string();
            args.extend([
                format!("--cert-file={}", file("server.crt")),
                format!("--key-file={}", file("server.key")),
                format!("--trusted-ca-file={}", file("ca.crt")),
                "--client-cert-auth".to_owned(),
            ]);
        }
        let etcd = Self {
            server: Server::spawn(
                "etcd",
                etcd,
                args.into_iter().map(OsString::from).collect(),
                dir,
            ),
            client_port,
            secure,
        };
        etcd.wait_until_ready().await;
        etcd
    }

    /// The client URL, `http://127.0.0.1:PORT` (`https://` when secured).
    pub fn url(&self) -> String {
        let scheme = if self.secure.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// The files and credentials of a secured etcd ([`start_secure`](Etcd::start_secure)).
    pub fn secure(&self) -> Option<&Secure> {
        self.secure.as_ref()
    }

    /// TLS with the client certificate when secured, and the password if `user`.
    fn options(&self, user: bool) -> Option<ConnectOptions> {
        let secure = self.secure.as_ref()?;
        let certificates = &secure.certificates;
        let tls = TlsOptions::new()
            .ca_certificate(Certificate::from_pem(certificates.read("ca.crt")))
            .identity(Identity::from_pem(
                certificates.read("client.crt"),
                certificates.read("client.key"),
            ));
        let options = ConnectOptions::new().with_tls(tls);
        Some(if user {
            options.with_user(secure.user, secure.password)
        } else {
            options
        })
    }

    async fn connect(&self, user: bool) -> etcd_client::Client {
        etcd_client::Client::connect([self.url()], self.options(user))
            .await
            .unwrap_or_else(|error| panic!("cannot connect to etcd at {}: {error}", self.url()))
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.client_port
    }

    /// A client connected to this etcd (when secured: over TLS, as `root` with its
    /// password).
    pub async fn client(&self) -> etcd_client::Client {
        self.connect(true).await
    }
}

/// Killed, etcd keeps its data; restarted, it has the same data and port.
impl Served for Etcd {
    async fn answers(&self) -> bool {
        // Ready, and ours: its only member has our name.
        let Ok(mut client) = etcd_client::Client::connect([self.url()], self.options(false)).await
        else {
            return false;
        };
        client.member_list().await.is_ok_and(|list| {
            list.members()
                .iter()
                .any(|member| member.name() == member_name(self.client_port))
        })
    }

    fn server(&self) -> &Server {
        &self.server
    }

    fn server_mut(&mut self) -> &mut Server {
        &mut self.server
    }
}

/// Writes `value` at `key` the way another writer would, on an etcd lease of 60 s of its
/// own if `leased`, else on none.
///
/// # Panics
///
/// When etcd refuses the grant or the write.
pub async fn put_foreign(
    client: &mut etcd_client::Client,
    key: &str,
    value: impl Into<Vec<u8>>,
    leased: bool,
) {
    let options = if leased {
        let lease = client.lease_grant(60, None).await.expect("a lease grant");
        Some(PutOptions::new().with_lease(lease.id()))
    } else {
        None
    };
    client
        .put(key, value, options)
        .await
        .expect("a foreign write");
}
