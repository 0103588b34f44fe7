//! A real kube-apiserver for tests, the way envtest runs one: an apiserver and its own
//! etcd, on loopback, no nodes.
//!
//! Two versions are tested: `LOCK_TEST_KUBE_VERSION` picks `1.20` (the default) or `1.36`
//! ([`KubeVersion`]); `scripts/test` runs every Kubernetes test file against both.
//!
//! Where the apiserver comes from, in order:
//! 1. `LOCK_TEST_KUBECONFIG` names a kubeconfig: the tests run against that cluster (its
//!    user must be allowed to impersonate, for the forbidden client);
//! 2. `KUBEBUILDER_ASSETS` names a folder holding `kube-apiserver` and `etcd`;
//! 3. the binaries that `scripts/provision` builds, cached in `$LOCKS_CACHE` (default
//!    `~/.cache/locks`): v1.20.2 from Debian's source package, over Debian's etcd 3.4; or
//!    v1.36.3 from Go modules (`tests/go/kube-apiserver`), over an etcd 3.6 built beside it
//!    (`tests/go/etcd`).
//!
//! Only etcd and the apiserver run: nothing garbage-collects, so tests use fresh Lease
//! names in the `default` namespace rather than fresh namespaces.

use std::{
    ffi::OsString,
    fmt,
    path::{Path, PathBuf},
    process::Command,
    sync::Once,
    time::Duration,
};

use kube::config::{KubeConfigOptions, Kubeconfig};
use secrecy::SecretString;
use tokio::sync::OnceCell;

use crate::{
    certificates::{Certificates, openssl},
    etcd::Etcd,
    process::{Served, Server, free_port, program},
    proxy::Proxy,
};

/// The variable naming a kubeconfig to test against instead of a local apiserver.
pub const KUBECONFIG_VAR: &str = "LOCK_TEST_KUBECONFIG";

/// The apiserver version the tests run against by default (`LOCK_TEST_KUBE_VERSION`
/// unset); [`Kube::version`] tells the one running.
pub const APISERVER_VERSION: &str = "1.20.2";

/// The variable picking the apiserver version: `1.20` (the default) or `1.36`.
pub const VERSION_VAR: &str = "LOCK_TEST_KUBE_VERSION";

/// A Kubernetes version the harness runs, picked by `LOCK_TEST_KUBE_VERSION`. It chooses
/// the apiserver and etcd that `scripts/provision` built (unless `KUBEBUILDER_ASSETS` or
/// `LOCK_TEST_KUBECONFIG` name others), and the client-go contender of the same release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KubeVersion {
    /// v1.20.2, from Debian's source package, over Debian's etcd 3.4; client-go v0.20.
    V1_20,
    /// v1.36.3, from Go modules, over etcd 3.6; client-go v0.36.
    V1_36,
}

impl KubeVersion {
    /// The one `LOCK_TEST_KUBE_VERSION` names (`1.20` when unset or empty); panics on any
    /// other value.
    pub fn from_env() -> Self {
        let value = std::env::var(VERSION_VAR).unwrap_or_default();
        match value.as_str() {
            "" | "1.20" => KubeVersion::V1_20,
            "1.36" => KubeVersion::V1_36,
            other => panic!("{VERSION_VAR}={other}: it is 1.20 or 1.36"),
        }
    }

    /// Its name in `LOCK_TEST_KUBE_VERSION`: `1.20` or `1.36`.
    pub fn minor(self) -> &'static str {
        match self {
            KubeVersion::V1_20 => "1.20",
            KubeVersion::V1_36 => "1.36",
        }
    }

    /// The apiserver's full version: `1.20.2` or `1.36.3`.
    pub fn apiserver(self) -> &'static str {
        match self {
            KubeVersion::V1_20 => APISERVER_VERSION,
            KubeVersion::V1_36 => "1.36.3",
        }
    }

    /// The folder of the cache holding the apiserver `scripts/provision` built, and the
    /// etcd it runs over (`None`: Debian's etcd on the `PATH`).
    fn cached(self) -> (PathBuf, Option<PathBuf>) {
        match self {
            KubeVersion::V1_20 => (
                cache().join(format!("kube-apiserver-v{APISERVER_VERSION}")),
                None,
            ),
            KubeVersion::V1_36 => {
                let dir = cache().join(format!("kube-v{}", self.apiserver()));
                (dir.clone(), Some(dir.join("etcd")))
            }
        }
    }

    /// The client-go contender built against this release's client-go.
    pub(crate) fn contender(self) -> PathBuf {
        let dir = match self {
            KubeVersion::V1_20 => "lease-contender",
            KubeVersion::V1_36 => "lease-contender-v0.36",
        };
        cache().join(dir).join("lease-contender")
    }
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "kube-apiserver v{} ({VERSION_VAR}={})",
            self.apiserver(),
            self.minor()
        )
    }
}

/// `$LOCKS_CACHE`, default `~/.cache/locks`: where `scripts/provision` builds.
pub(crate) fn cache() -> PathBuf {
    std::env::var_os("LOCKS_CACHE").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/locks"),
        PathBuf::from,
    )
}

/// After every panic of this test binary, a line naming the Kubernetes version it runs
/// against, so that a failing test says which one it failed on.
pub(crate) fn name_version_on_panic(version: KubeVersion) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            eprintln!("note: this test ran against {version}");
        }));
    });
}

pub(crate) const ADMIN_TOKEN: &str = "lock-tests-admin-token";
const FORBIDDEN_TOKEN: &str = "lock-tests-forbidden-token";
const FORBIDDEN_USER: &str = "lock-tests-forbidden";

/// A Kubernetes API to test against; a local one is stopped on drop.
#[derive(Debug)]
pub struct Kube {
    cluster: Cluster,
    version: KubeVersion,
}

#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per test binary at most
enum Cluster {
    Local {
        apiserver: Server,
        _etcd: Etcd,
        url: String,
        ca: Vec<u8>,
    },
    External {
        kubeconfig: PathBuf,
    },
}

impl Kube {
    /// One apiserver for the whole test binary, started by the first test that asks.
    /// Clients are made per call, so each test's runtime owns its connections.
    pub async fn shared() -> &'static Kube {
        static SHARED: OnceCell<Kube> = OnceCell::const_new();
        SHARED.get_or_init(Self::start).await
    }

    /// Starts an apiserver of its own (or connects to `LOCK_TEST_KUBECONFIG`'s cluster).
    ///
    /// Its version is the one `LOCK_TEST_KUBE_VERSION` picks ([`KubeVersion::from_env`]);
    /// from then on every panic of the test binary is followed by a line naming it.
    pub async fn start() -> Self {
        let version = KubeVersion::from_env();
        name_version_on_panic(version);
        if let Some(kubeconfig) = std::env::var_os(KUBECONFIG_VAR) {
            return Self::external(kubeconfig.into()).await;
        }
        let (apiserver_program, etcd_program) = binaries(version);
        let etcd = Etcd::start_program(etcd_program).await;
        let dir = Server::make_dir("kube-apiserver");
        let port = free_port();
        let ca = write_apiserver_files(&dir);
        let args = apiserver_args(&apiserver_program, &etcd.url(), port, &dir);
        // The name (in failure messages, and of its log) says the version.
        let apiserver = Server::spawn(
            &format!("kube-apiserver-v{}", version.apiserver()),
            apiserver_program,
            args,
            dir,
        );
        let kube = Self {
            cluster: Cluster::Local {
                apiserver,
                _etcd: etcd,
                url: format!("https://127.0.0.1:{port}"),
                ca,
            },
            version,
        };
        kube.wait_until_ready().await;
        kube
    }

    /// Connects to the cluster a kubeconfig names; its user must be allowed to
    /// impersonate, for [`forbidden`](Kube::forbidden).
    pub async fn external(kubeconfig: PathBuf) -> Self {
        let kube = Self {
            cluster: Cluster::External { kubeconfig },
            version: KubeVersion::from_env(),
        };
        if let Err(error) = kube.admin().await.apiserver_version().await {
            panic!("the cluster of the kubeconfig does not answer: {error}");
        }
        kube
    }

    /// The version `LOCK_TEST_KUBE_VERSION` picked: of the local apiserver (unless
    /// `KUBEBUILDER_ASSETS` named another) and of the client-go contender that goes with it.
    pub fn version(&self) -> KubeVersion {
        self.version
    }

    /// A kubeconfig file for the admin user, for programs that read one: the one named
    /// by `LOCK_TEST_KUBECONFIG`, or one written for the local apiserver.
    pub fn kubeconfig(&self) -> Option<PathBuf> {
        let (apiserver, url) = match &self.cluster {
            Cluster::Local { apiserver, url, .. } => (apiserver, url),
            Cluster::External { kubeconfig } => return Some(kubeconfig.clone()),
        };
        let path = apiserver.dir().join("kubeconfig.yaml");
        let ca = apiserver.dir().join("ca.crt");
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: lock-tests\n  cluster:\n    server: {url}\n    \
             certificate-authority: {}\nusers:\n- name: admin\n  user:\n    token: {ADMIN_TOKEN}\ncontexts:\n\
             - name: lock-tests\n  context:\n    cluster: lock-tests\n    user: admin\n    namespace: {}\n\
             current-context: lock-tests\n",
            ca.display(),
            self.namespace()
        );
        // Written aside and renamed: a process reading it meanwhile sees the old file or
        // the new one, never half of one.
        let aside = apiserver
            .dir()
            .join(format!("kubeconfig.yaml.{:?}", std::thread::current().id()));
        std::fs::write(&aside, yaml)
            .and_then(|()| std::fs::rename(&aside, &path))
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
        Some(path)
    }

    /// A client with every right (`system:masters`).
    pub async fn admin(&self) -> kube::Client {
        self.client(false).await
    }

    /// A client for an authenticated user that RBAC grants nothing: requests on Leases
    /// get 403 Forbidden.
    pub async fn forbidden(&self) -> kube::Client {
        self.client(true).await
    }

    /// The namespace tests use.
    pub fn namespace(&self) -> &str {
        "default"
    }

    async fn client(&self, forbidden: bool) -> kube::Client {
        let config = self.config(forbidden).await;
        kube::Client::try_from(config)
            .unwrap_or_else(|error| panic!("cannot build a kube client: {error}"))
    }

    /// The client configuration of the admin user (or of the forbidden one), e.g. to
    /// build a client of another kind.
    pub async fn config(&self, forbidden: bool) -> kube::Config {
        let mut config = match &self.cluster {
            Cluster::Local { url, ca, .. } => {
                let url = url
                    .parse()
                    .unwrap_or_else(|error| panic!("bad apiserver URL {url}: {error}"));
                let mut config = kube::Config::new(url);
                config.root_cert = Some(vec![ca.clone()]);
                let token = if forbidden {
                    FORBIDDEN_TOKEN
                } else {
                    ADMIN_TOKEN
                };
                config.auth_info.token = Some(SecretString::from(token.to_owned()));
                config
            }
            Cluster::External { kubeconfig } => {
                let file = Kubeconfig::read_from(kubeconfig).unwrap_or_else(|error| {
                    panic!("cannot read {}: {error}", kubeconfig.display())
                });
                let mut config =
                    kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                        .await
                        .unwrap_or_else(|error| {
                            panic!("bad kubeconfig {}: {error}", kubeconfig.display())
                        });
                if forbidden {
                    config.auth_info.impersonate = Some(FORBIDDEN_USER.to_owned());
                }
                config
            }
        };
        config.default_namespace = self.namespace().to_owned();
        config
    }

    /// The admin user's configuration through a [`Proxy`] of its own to the apiserver,
    /// for a client whose connection alone is slowed or cut. Keep the proxy as long as
    /// the client.
    pub async fn proxied_config(&self) -> (kube::Config, Proxy) {
        let mut config = self.config(false).await;
        let host = config
            .cluster_url
            .host()
            .unwrap_or_else(|| panic!("the apiserver URL {} names no host", config.cluster_url))
            .to_owned();
        let port = config.cluster_url.port_u16().unwrap_or(443);
        let target = tokio::net::lookup_host((host.as_str(), port))
            .await
            .ok()
            .and_then(|mut addresses| addresses.next())
            .unwrap_or_else(|| panic!("the apiserver's host {host} has no address"));
        let proxy = Proxy::start(target).await;
        config.cluster_url = format!("https://127.0.0.1:{}", proxy.port())
            .parse()
            .unwrap_or_else(|error| panic!("the proxy's URL: {error}"));
        // The certificate names the apiserver's own host.
        config.tls_server_name = Some(host);
        (config, proxy)
    }

    /// The apiserver process, for pausing (local clusters only; [`Served`] has the
    /// controls).
    pub fn apiserver(&self) -> Option<&Server> {
        match &self.cluster {
            Cluster::Local { apiserver, .. } => Some(apiserver),
            Cluster::External { .. } => None,
        }
    }
}

/// A local cluster's apiserver: killed, its etcd keeps every object; restarted, it has
/// the same port and certificates, and is ready once it answers `/readyz` and the tests'
/// namespace exists. An external cluster's apiserver is not the tests' to control: its
/// [`server`](Served::server) panics.
impl Served for Kube {
    const STARTUP: Duration = Duration::from_secs(90);

    async fn answers(&self) -> bool {
        ready(self.admin().await, self.namespace()).await
    }

    fn server(&self) -> &Server {
        self.apiserver().unwrap_or_else(|| panic!("{EXTERNAL}"))
    }

    fn server_mut(&mut self) -> &mut Server {
        match &mut self.cluster {
            Cluster::Local { apiserver, .. } => apiserver,
            Cluster::External { .. } => panic!("{EXTERNAL}"),
        }
    }
}

/// Whether the apiserver of `admin` is ready for tests: `/readyz` says "ok", and the
/// bootstrap controller has created `namespace` (which it does after `/readyz` is ok).
pub(crate) async fn ready(admin: kube::Client, namespace: &str) -> bool {
    let ready = http::Request::get("/readyz").body(Vec::new());
    let namespace = http::Request::get(format!("/api/v1/namespaces/{namespace}")).body(Vec::new());
    let (Ok(ready), Ok(namespace)) = (ready, namespace) else {
        return false;
    };
    admin
        .request_text(ready)
        .await
        .is_ok_and(|body| body == "ok")
        && admin.request_text(namespace).await.is_ok()
}

const EXTERNAL: &str =
    "an external cluster's apiserver cannot be paused, killed or restarted by the tests";

/// The apiserver and etcd binaries to run.
pub(crate) fn binaries(version: KubeVersion) -> (PathBuf, PathBuf) {
    if let Some(assets) = std::env::var_os("KUBEBUILDER_ASSETS") {
        let assets = PathBuf::from(assets);
        let (apiserver, etcd) = (assets.join("kube-apiserver"), assets.join("etcd"));
        assert!(
            apiserver.is_file() && etcd.is_file(),
            "KUBEBUILDER_ASSETS={} must hold kube-apiserver and etcd",
            assets.display()
        );
        return (apiserver, etcd);
    }
    let (dir, etcd) = version.cached();
    let apiserver = dir.join("kube-apiserver");
    let missing = |path: &Path| {
        format!(
            "no {} at {}: run scripts/provision (it builds the {version}), or set \
             KUBEBUILDER_ASSETS or {KUBECONFIG_VAR}",
            path.file_name().unwrap_or_default().to_string_lossy(),
            path.display()
        )
    };
    assert!(apiserver.is_file(), "{}", missing(&apiserver));
    let etcd = match etcd {
        Some(etcd) => {
            assert!(etcd.is_file(), "{}", missing(&etcd));
            etcd
        }
        None => program("etcd", "apt-get install etcd-server"),
    };
    (apiserver, etcd)
}

/// The apiserver's minor version, from `--version` ("Kubernetes v1.20.2").
fn minor_version(apiserver: &Path) -> Option<u32> {
    let output = Command::new(apiserver).arg("--version").output();
    let version = output
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    version
        .trim()
        .strip_prefix("Kubernetes v1.")
        .and_then(|rest| rest.split('.').next())
        .and_then(|minor| minor.parse::<u32>().ok())
}

/// Writes what an apiserver reads to `dir`: a CA and a serving certificate for 127.0.0.1
/// signed by it, a service-account key pair, and the token file of the admin and the
/// forbidden user. Returns the CA certificate (DER) for clients. Apiservers of one
/// cluster share these files.
pub(crate) fn write_apiserver_files(dir: &Path) -> Vec<u8> {
    let ca = make_certificates(dir);
    std::fs::write(
        dir.join("tokens.csv"),
        format!(
            "{ADMIN_TOKEN},lock-tests-admin,1,\"system:masters\"\n{FORBIDDEN_TOKEN},{FORBIDDEN_USER},2\n"
        ),
    )
    .unwrap_or_else(|error| panic!("cannot write the token file: {error}"));
    ca
}

/// The arguments of the apiserver at `program` listening on `port`, over the etcd of
/// `etcd_servers` (comma-separated URLs), with the files of
/// [`write_apiserver_files`] in `files`.
pub(crate) fn apiserver_args(
    program: &Path,
    etcd_servers: &str,
    port: u16,
    files: &Path,
) -> Vec<OsString> {
    let file = |name: &str| files.join(name).display().to_string();
    let mut args = vec![
        format!("--etcd-servers={etcd_servers}"),
        "--bind-address=127.0.0.1".to_owned(),
        "--advertise-address=127.0.0.1".to_owned(),
        format!("--secure-port={port}"),
        "--endpoint-reconciler-type=none".to_owned(),
        format!("--tls-cert-file={}", file("server.crt")),
        format!("--tls-private-key-file={}", file("server.key")),
        format!("--cert-dir={}", file(&format!("certs-{port}"))),
        format!("--token-auth-file={}", file("tokens.csv")),
        "--authorization-mode=RBAC".to_owned(),
        "--service-account-issuer=https://127.0.0.1".to_owned(),
        format!("--service-account-key-file={}", file("sa.pub")),
        format!("--service-account-signing-key-file={}", file("sa.key")),
        "--service-cluster-ip-range=10.0.0.0/24".to_owned(),
        "--enable-priority-and-fairness=false".to_owned(),
        "--profiling=false".to_owned(),
    ];
    let minor = minor_version(program);
    if minor.is_some_and(|minor| minor < 24) {
        // Before 1.24 the apiserver also listens on 127.0.0.1:8080 unless told not to.
        args.push("--insecure-port=0".to_owned());
    }
    if minor.is_some_and(|minor| minor >= 36) {
        // Coordinated leader election and its LeaseCandidate API (coordination.k8s.io
        // v1beta1), both beta and off by default in 1.36: the tests run with them on.
        args.push(
            "--feature-gates=CoordinatedLeaderElection=true,ShardedListAndWatch=true".to_owned(),
        );
        args.push("--runtime-config=coordination.k8s.io/v1beta1=true".to_owned());
    }
    args.into_iter().map(OsString::from).collect()
}

/// Makes a CA, a serving certificate for 127.0.0.1 signed by it, and a service-account
/// key pair in `dir` with openssl; returns the CA certificate (DER) for clients.
fn make_certificates(dir: &Path) -> Vec<u8> {
    let certificates = Certificates::make(dir, "lock-tests-admin");
    openssl(dir, &["genrsa", "-out", "sa.key", "2048"]);
    openssl(dir, &["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"]);
    certificates.read("ca.der")
}
