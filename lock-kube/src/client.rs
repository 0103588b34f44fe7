//! A `kube::Client` whose connections set `TCP_NODELAY`.

use hyper_util::{
    client::legacy::connect::{Connect, HttpConnector},
    rt::TokioExecutor,
};
use kube::client::ConfigExt;
use tower::{BoxError, ServiceBuilder};

/// Builds a client like `kube::Client::try_from(config)`, but whose TCP connections set
/// `TCP_NODELAY`.
///
/// kube-client's default connector leaves Nagle's algorithm on, so a small request
/// written in two segments (the TLS handshake's end, then the request) can wait for the
/// server's delayed ACK, about 40 ms on Linux. Locks make many small requests, where
/// that delay dominates. This client has kube's base-URI, authentication and extra-header
/// layers, and the config's connect timeout; it has no read timeout of its own, since
/// lock-core bounds every lock request.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = lock_kube::nodelay_client(kube::Config::infer().await?)?;
/// let backend = lock_kube::KubeBackend::new(client, "my-namespace");
/// # Ok(()) }
/// ```
pub fn nodelay_client(config: kube::Config) -> Result<kube::Client, kube::Error> {
    let mut connector = HttpConnector::new();
    connector.enforce_http(false);
    connector.set_nodelay(true);
    connector.set_connect_timeout(config.connect_timeout);
    // TLS by the feature chosen, rustls first, as kube's own client picks.
    #[cfg(any(feature = "rustls-tls", feature = "aws-lc-rs"))]
    {
        // With both providers built in (another crate may turn on the other), rustls
        // cannot pick one by itself: the one of the feature chosen, as kube's own client
        // does for aws-lc-rs, unless the binary installed one first. This sets rustls'
        // process-wide default.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            #[cfg(feature = "aws-lc-rs")]
            let provider = rustls::crypto::aws_lc_rs::default_provider();
            #[cfg(not(feature = "aws-lc-rs"))]
            let provider = rustls::crypto::ring::default_provider();
            let _ = provider.install_default();
        }
        let https = config.rustls_https_connector_with_connector(connector)?;
        stack(config, https)
    }
    #[cfg(all(
        feature = "openssl-tls",
        not(any(feature = "rustls-tls", feature = "aws-lc-rs"))
    ))]
    {
        let https = config.openssl_https_connector_with_connector(connector)?;
        stack(config, https)
    }
    #[cfg(not(any(feature = "rustls-tls", feature = "aws-lc-rs", feature = "openssl-tls")))]
    {
        // No TLS feature: plain HTTP only.
        if config.cluster_url.scheme() == Some(&http::uri::Scheme::HTTPS) {
            return Err(kube::Error::TlsRequired);
        }
        stack(config, connector)
    }
}

/// kube's base-URI, authentication and extra-header layers over a client of `connector`.
fn stack<C>(config: kube::Config, connector: C) -> Result<kube::Client, kube::Error>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(http);
    Ok(kube::Client::new(service, config.default_namespace))
}
