//! A `kube::Client` whose connections set `TCP_NODELAY`, with the rest of kube's own
//! client stack.

use std::time::Duration;

use http::{HeaderMap, Request, Response, Uri};
use hyper::{
    body::Incoming,
    rt::{Read, Write},
};
use hyper_timeout::TimeoutConnector;
use hyper_util::{
    client::legacy::connect::{Connection, HttpConnector},
    rt::TokioExecutor,
};
use kube::client::{Body, ConfigExt, retry::RetryPolicy};
use tower::{BoxError, Service, ServiceBuilder, retry::RetryLayer};
use tower_http::{classify::ServerErrorsFailureClass, trace::TraceLayer};
use tracing::Span;

#[cfg(feature = "socks5")]
use hyper_util::client::legacy::connect::proxy::SocksV5;
#[cfg(feature = "http-proxy")]
use hyper_util::client::legacy::connect::proxy::Tunnel;

/// Builds a client like `kube::Client::try_from(config)`, but whose TCP connections set
/// `TCP_NODELAY`.
///
/// kube's connector leaves Nagle's algorithm on, so a small request written in two
/// segments (the TLS handshake's end, then the request) can wait for the server's delayed
/// ACK, about 40 ms on Linux. Locks make many small requests, where that delay dominates.
/// kube 5 cannot be told to set the option (its connector is made inside
/// `ClientBuilder::try_from`; kube-rs/kube#2056 asks for it), so this function builds
/// kube's stack itself, around a connector that sets it. Everything else is as kube
/// builds it from the same `config`:
///
/// - the connect, read and write timeouts (`connect_timeout`, `read_timeout`,
///   `write_timeout`, `reset_reader_on_write`), covering TLS and proxy handshakes;
/// - the proxy of `proxy_url`: `http://` (with Basic credentials from the URL's user
///   info) and `https://` with this crate's `http-proxy` feature, `socks5://` with its
///   `socks5` feature; without the feature a proxy URL is refused with
///   `kube::Error::ProxyProtocolDisabled`, never ignored;
/// - TLS by the feature chosen (`rustls-tls`, `aws-lc-rs`, `openssl-tls`; none: plain
///   HTTP only, `https` refused with `kube::Error::TlsRequired`);
/// - the layers: base URI, gzip decompression (this crate's `gzip` feature, unless
///   `disable_compression`), kube's retry of 429, 503 and 504 answers
///   (`RetryPolicy::server_retry`, unless `default_retry` is off), authentication, extra
///   headers, and the `HTTP` tracing span of every request;
/// - the expiry of an exec plugin's client certificate, as `Client::valid_until`.
///
/// The features `http-proxy`, `socks5` and `gzip` turn on kube's features of the same
/// names, so a client made by kube from the same config behaves the same; a binary that
/// turns on only kube's feature gets no proxy from this client (refused, as said) and no
/// compression.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = lock_kube::nodelay_client(kube::Config::infer().await?)?;
/// let backend = lock_kube::KubeBackend::new(client, "my-namespace");
/// # Ok(()) }
/// ```
pub fn nodelay_client(config: kube::Config) -> Result<kube::Client, kube::Error> {
    install_crypto_provider();
    let mut connector = HttpConnector::new();
    connector.enforce_http(false);
    connector.set_nodelay(true);
    let Some(proxy) = config.proxy_url.clone() else {
        return client(config, connector);
    };
    match proxy.scheme_str() {
        Some("http") => http_proxy(config, proxy, connector),
        Some("https") => https_proxy(config, proxy, connector),
        Some("socks5") => socks5_proxy(config, proxy, connector),
        _ => Err(kube::Error::ProxyProtocolUnsupported {
            proxy_url: Box::new(proxy),
        }),
    }
}

/// With both rustls providers built in (another crate may turn on the other), rustls
/// cannot pick one by itself: the one of the feature chosen, as kube's own client does
/// for aws-lc-rs, unless the binary installed one first. This sets rustls' process-wide
/// default.
fn install_crypto_provider() {
    #[cfg(any(feature = "rustls-tls", feature = "aws-lc-rs"))]
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        #[cfg(feature = "aws-lc-rs")]
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        #[cfg(not(feature = "aws-lc-rs"))]
        let provider = rustls::crypto::ring::default_provider();
        // Only fails when another thread installed one in between, which is as good.
        let _ = provider.install_default();
    }
}

#[cfg(feature = "http-proxy")]
fn http_proxy(
    config: kube::Config,
    proxy: Uri,
    connector: HttpConnector,
) -> Result<kube::Client, kube::Error> {
    let tunnel = proxy_auth(&proxy, Tunnel::new(proxy.clone(), connector));
    client(config, tunnel)
}

#[cfg(feature = "http-proxy")]
fn https_proxy(
    config: kube::Config,
    proxy: Uri,
    connector: HttpConnector,
) -> Result<kube::Client, kube::Error> {
    if !TLS {
        return Err(kube::Error::TlsRequired);
    }
    let to_proxy = tls(&config, connector)?;
    let tunnel = proxy_auth(&proxy, Tunnel::new(proxy.clone(), to_proxy));
    client(config, tunnel)
}

#[cfg(not(feature = "http-proxy"))]
fn http_proxy(_: kube::Config, proxy: Uri, _: HttpConnector) -> Result<kube::Client, kube::Error> {
    Err(kube::Error::ProxyProtocolDisabled {
        proxy_url: Box::new(proxy),
        protocol_feature: "lock-kube/http-proxy",
    })
}

#[cfg(not(feature = "http-proxy"))]
use self::http_proxy as https_proxy;

#[cfg(feature = "socks5")]
fn socks5_proxy(
    config: kube::Config,
    proxy: Uri,
    connector: HttpConnector,
) -> Result<kube::Client, kube::Error> {
    client(config, SocksV5::new(proxy, connector))
}

#[cfg(not(feature = "socks5"))]
fn socks5_proxy(
    _: kube::Config,
    proxy: Uri,
    _: HttpConnector,
) -> Result<kube::Client, kube::Error> {
    Err(kube::Error::ProxyProtocolDisabled {
        proxy_url: Box::new(proxy),
        protocol_feature: "lock-kube/socks5",
    })
}

/// The proxy URL's user info as Basic credentials, percent-escapes decoded (a password
/// with `@` or `:` must be escaped in a URL), as kube sends them.
#[cfg(feature = "http-proxy")]
fn proxy_auth<C>(proxy: &Uri, tunnel: Tunnel<C>) -> Tunnel<C> {
    use base64::Engine;
    let Some((user_info, _)) = proxy.authority().and_then(|a| a.as_str().split_once('@')) else {
        return tunnel;
    };
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(user_info).collect();
    let basic = base64::engine::general_purpose::STANDARD.encode(decoded);
    match http::HeaderValue::from_str(&format!("Basic {basic}")) {
        Ok(header) => tunnel.with_auth(header),
        Err(_) => tunnel,
    }
}

/// Whether a TLS feature is on.
#[cfg(feature = "http-proxy")]
const TLS: bool = cfg!(any(
    feature = "rustls-tls",
    feature = "aws-lc-rs",
    feature = "openssl-tls"
));

/// TLS over `connector` by the feature chosen, rustls first, as kube picks.
#[cfg(any(feature = "rustls-tls", feature = "aws-lc-rs"))]
fn tls<H>(
    config: &kube::Config,
    connector: H,
) -> Result<hyper_rustls::HttpsConnector<H>, kube::Error> {
    config.rustls_https_connector_with_connector(connector)
}

#[cfg(all(
    feature = "openssl-tls",
    not(any(feature = "rustls-tls", feature = "aws-lc-rs"))
))]
fn tls<H>(
    config: &kube::Config,
    connector: H,
) -> Result<hyper_openssl::client::legacy::HttpsConnector<H>, kube::Error>
where
    H: Service<Uri> + Send,
    H::Error: Into<BoxError>,
    H::Future: Send + 'static,
    H::Response: Read + Write + Connection + Unpin,
{
    config.openssl_https_connector_with_connector(connector)
}

/// No TLS feature: plain HTTP only.
#[cfg(not(any(feature = "rustls-tls", feature = "aws-lc-rs", feature = "openssl-tls")))]
fn tls<H>(config: &kube::Config, connector: H) -> Result<H, kube::Error> {
    if config.cluster_url.scheme() == Some(&http::uri::Scheme::HTTPS) {
        return Err(kube::Error::TlsRequired);
    }
    Ok(connector)
}

/// kube's client over `connector` (a TCP connection, or one through a proxy): TLS, the
/// timeouts, and kube's layers, in kube's order.
fn client<H>(config: kube::Config, connector: H) -> Result<kube::Client, kube::Error>
where
    H: Service<Uri> + Clone + Send + Sync + 'static,
    H::Response: Connection + Read + Write + Send + Unpin + 'static,
    H::Future: Send + 'static,
    H::Error: Into<BoxError>,
{
    let mut connector = TimeoutConnector::new(tls(&config, connector)?);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let http: hyper_util::client::legacy::Client<_, Body> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);

    #[cfg(feature = "gzip")]
    let decompression = tower_http::decompression::DecompressionLayer::new()
        .no_br()
        .no_deflate()
        .no_zstd()
        .gzip(!config.disable_compression);
    #[cfg(not(feature = "gzip"))]
    let decompression = tower::layer::util::Identity::new();

    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .layer(decompression)
        .option_layer(
            config
                .default_retry
                .then(|| RetryLayer::new(RetryPolicy::server_retry())),
        )
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .layer(trace_layer())
        .map_err(BoxError::from)
        .service(http);
    let client = kube::Client::new(service, config.default_namespace.clone());
    if config.auth_info.exec.is_none() {
        return Ok(client);
    }
    // When an exec plugin gives a client certificate, its expiry. kube keeps the reading
    // of it to itself, so a client kube builds from the same config (which runs the
    // plugin once more) tells it.
    let valid_until = *kube::Client::try_from(config)?.valid_until();
    Ok(client.with_valid_until(valid_until))
}

/// The span kube's client opens for every request, named and attributed as kube's (the
/// attributes follow OpenTelemetry's HTTP conventions), with its events.
#[allow(clippy::type_complexity)]
fn trace_layer() -> TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
    fn(&Request<Body>) -> Span,
    fn(&Request<Body>, &Span),
    fn(&Response<Incoming>, Duration, &Span),
    (),
    fn(Option<&HeaderMap>, Duration, &Span),
    fn(ServerErrorsFailureClass, Duration, &Span),
> {
    TraceLayer::new_for_http()
        .make_span_with(request_span as fn(&Request<Body>) -> Span)
        .on_request(on_request as fn(&Request<Body>, &Span))
        .on_response(on_response as fn(&Response<Incoming>, Duration, &Span))
        .on_body_chunk(())
        .on_eos(on_end_of_stream as fn(Option<&HeaderMap>, Duration, &Span))
        .on_failure(on_failure as fn(ServerErrorsFailureClass, Duration, &Span))
}

fn request_span(request: &Request<Body>) -> Span {
    tracing::debug_span!(
        "HTTP",
        http.method = %request.method(),
        http.url = %request.uri(),
        http.status_code = tracing::field::Empty,
        otel.name = request.extensions().get::<&'static str>().unwrap_or(&"HTTP"),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
    )
}

fn on_request(_: &Request<Body>, _: &Span) {
    tracing::debug!("requesting");
}

fn on_response(response: &Response<Incoming>, _: Duration, span: &Span) {
    let status = response.status();
    span.record("http.status_code", status.as_u16());
    if status.is_client_error() || status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
}

fn on_end_of_stream(_: Option<&HeaderMap>, _: Duration, _: &Span) {
    tracing::debug!("stream closed");
}

fn on_failure(failure: ServerErrorsFailureClass, _: Duration, span: &Span) {
    span.record("otel.status_code", "ERROR");
    match failure {
        ServerErrorsFailureClass::StatusCode(status) => {
            span.record("http.status_code", status.as_u16());
            tracing::error!("failed with status {status}");
        }
        ServerErrorsFailureClass::Error(error) => tracing::error!("failed with error {error}"),
    }
}
