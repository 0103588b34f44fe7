//! The Redis of the harness is real, and restarts with or without its data.

use std::time::Duration;

use lock_tests::{Persistence, Redis, Served};
use redis::AsyncCommands;

async fn connect(redis: &Redis) -> redis::aio::MultiplexedConnection {
    redis.connection().await
}

#[tokio::test]
async fn eval_runs_a_lua_script_atomically() {
    let redis = Redis::start().await;
    let mut connection = connect(&redis).await;
    let script = redis::Script::new(
        "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCR', KEYS[2])",
    );
    let counter: i64 = script
        .key("value")
        .key("counter")
        .arg("hello")
        .invoke_async(&mut connection)
        .await
        .expect("eval");
    assert_eq!(counter, 1);
    let value: String = connection.get("value").await.expect("get");
    assert_eq!(value, "hello");
}

#[tokio::test]
async fn killed_redis_with_an_append_only_file_restarts_with_its_data() {
    let mut redis = Redis::start_with(Persistence::AppendOnly).await;
    let _: () = connect(&redis)
        .await
        .set("durable", "value")
        .await
        .expect("set");
    redis.kill();
    redis.restart().await;
    let value: Option<String> = connect(&redis).await.get("durable").await.expect("get");
    assert_eq!(value.as_deref(), Some("value"));
}

#[tokio::test]
async fn killed_redis_without_persistence_restarts_empty() {
    let mut redis = Redis::start().await;
    let _: () = connect(&redis)
        .await
        .set("volatile", "value")
        .await
        .expect("set");
    redis.kill();
    redis.restart().await;
    let value: Option<String> = connect(&redis).await.get("volatile").await.expect("get");
    assert_eq!(value, None);
}

#[tokio::test]
async fn a_paused_redis_answers_nothing_until_resumed() {
    let redis = Redis::start().await;
    let mut connection = connect(&redis).await;
    redis.server().pause();
    let ping = redis::cmd("PING");
    let frozen = tokio::time::timeout(
        Duration::from_millis(500),
        ping.query_async::<String>(&mut connection),
    )
    .await;
    assert!(frozen.is_err(), "a paused redis answered: {frozen:?}");
    redis.server().resume();
    let answered = tokio::time::timeout(
        Duration::from_secs(5),
        ping.query_async::<String>(&mut connection),
    )
    .await;
    assert_eq!(answered.ok().and_then(Result::ok).as_deref(), Some("PONG"));
}
