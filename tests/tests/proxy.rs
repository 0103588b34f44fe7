//! The proxy breaks the network on command: cut, blackhole, latency, heal.

use std::time::Duration;

use lock_tests::{Proxy, Redis, connect_redis};
use tokio::time::{Instant, sleep, timeout};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

async fn connect(proxy: &Proxy) -> redis::aio::MultiplexedConnection {
    connect_redis(proxy.port()).await
}

async fn ping(
    connection: &mut redis::aio::MultiplexedConnection,
    limit: Duration,
) -> Result<Result<String, redis::RedisError>, tokio::time::error::Elapsed> {
    timeout(limit, redis::cmd("PING").query_async::<String>(connection)).await
}

#[tokio::test]
async fn a_cut_fails_an_in_flight_request_within_its_timeout_and_heal_restores_service() {
    let redis = Redis::start().await;
    let proxy = Proxy::to_port(redis.port()).await;
    let mut connection = connect(&proxy).await;
    assert_eq!(
        ping(&mut connection, REQUEST_TIMEOUT)
            .await
            .ok()
            .and_then(Result::ok)
            .as_deref(),
        Some("PONG")
    );

    // BLPOP blocks on the server for 10 s: a request in flight when the cut comes.
    let started = Instant::now();
    let in_flight = tokio::spawn(async move {
        let mut blpop = redis::cmd("BLPOP");
        blpop.arg("never-filled").arg(10);
        timeout(
            REQUEST_TIMEOUT,
            blpop.query_async::<Option<Vec<String>>>(&mut connection),
        )
        .await
    });
    // Cut only once Redis holds the BLPOP: it is in flight.
    let mut direct = redis.connection().await;
    let blocked_since = Instant::now();
    loop {
        let info: String = redis::cmd("INFO")
            .arg("clients")
            .query_async(&mut direct)
            .await
            .expect("info");
        if info.lines().any(|line| line.trim() == "blocked_clients:1") {
            break;
        }
        assert!(
            blocked_since.elapsed() < REQUEST_TIMEOUT,
            "the BLPOP never reached Redis"
        );
        sleep(Duration::from_millis(5)).await;
    }
    proxy.cut();
    let outcome = in_flight.await.expect("the request task");
    assert!(
        matches!(outcome, Ok(Err(_))),
        "the in-flight request should fail, not {outcome:?}"
    );
    assert!(
        started.elapsed() < REQUEST_TIMEOUT,
        "it failed only after {:?}",
        started.elapsed()
    );

    // While cut, new connections are closed too.
    let client =
        redis::Client::open(format!("redis://127.0.0.1:{}", proxy.port())).expect("a Redis URL");
    let refused = timeout(REQUEST_TIMEOUT, client.get_multiplexed_async_connection()).await;
    assert!(
        matches!(refused, Ok(Err(_))),
        "a connection during the cut should fail: {refused:?}"
    );

    proxy.heal();
    let mut healed = connect(&proxy).await;
    assert_eq!(
        ping(&mut healed, REQUEST_TIMEOUT)
            .await
            .ok()
            .and_then(Result::ok)
            .as_deref(),
        Some("PONG")
    );
}

#[tokio::test]
async fn a_blackhole_makes_requests_hang_until_their_timeout() {
    let redis = Redis::start().await;
    let proxy = Proxy::to_port(redis.port()).await;
    let mut connection = connect(&proxy).await;

    proxy.blackhole();
    let hung = ping(&mut connection, Duration::from_millis(500)).await;
    assert!(hung.is_err(), "a blackholed request answered: {hung:?}");

    proxy.heal();
    assert_eq!(
        ping(&mut connection, REQUEST_TIMEOUT)
            .await
            .ok()
            .and_then(Result::ok)
            .as_deref(),
        Some("PONG")
    );
}

#[tokio::test]
async fn latency_delays_every_round_trip_until_healed() {
    let redis = Redis::start().await;
    let proxy = Proxy::to_port(redis.port()).await;
    let mut connection = connect(&proxy).await;

    proxy.set_latency(Duration::from_millis(100));
    let started = Instant::now();
    assert!(matches!(
        ping(&mut connection, REQUEST_TIMEOUT).await,
        Ok(Ok(_))
    ));
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "a round trip took only {:?}",
        started.elapsed()
    );

    proxy.heal();
    assert!(matches!(
        ping(&mut connection, REQUEST_TIMEOUT).await,
        Ok(Ok(_))
    ));
}
