//! The etcd of the harness is real, and survives SIGKILL on its data.

use std::time::Duration;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
use lock_tests::{Etcd, Served};
use tokio::time::{Instant, sleep};

#[tokio::test]
async fn a_transaction_is_a_compare_and_set() {
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let create_if_absent = || {
        Txn::new()
            .when([Compare::create_revision("key", CompareOp::Equal, 0)])
            .and_then([TxnOp::put("key", "first", None)])
    };
    assert!(
        client
            .txn(create_if_absent())
            .await
            .expect("txn")
            .succeeded()
    );
    assert!(
        !client
            .txn(create_if_absent())
            .await
            .expect("txn")
            .succeeded(),
        "the key exists now"
    );
}

#[tokio::test]
async fn a_key_attached_to_a_lease_disappears_after_its_ttl() {
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let lease = client.lease_grant(2, None).await.expect("lease grant");
    assert_eq!(lease.ttl(), 2);
    let options = PutOptions::new().with_lease(lease.id());
    client
        .put("leased", "value", Some(options))
        .await
        .expect("put");
    assert_eq!(
        client.get("leased", None).await.expect("get").kvs().len(),
        1
    );

    let granted = Instant::now();
    while !client
        .get("leased", None)
        .await
        .expect("get")
        .kvs()
        .is_empty()
    {
        assert!(
            granted.elapsed() < Duration::from_secs(10),
            "the key outlived its lease"
        );
        sleep(Duration::from_millis(100)).await;
    }
    assert!(
        granted.elapsed() >= Duration::from_secs(1),
        "the key vanished too early"
    );
}

#[tokio::test]
async fn killed_etcd_restarts_on_the_same_data_with_revisions_intact() {
    let mut etcd = Etcd::start().await;
    let revision = {
        let mut client = etcd.client().await;
        client
            .put("durable", "value", None)
            .await
            .expect("put")
            .header()
            .map(|h| h.revision())
    };
    etcd.kill();
    assert!(!etcd.server().is_alive());
    etcd.restart().await;

    let mut client = etcd.client().await;
    let read = client
        .get("durable", None)
        .await
        .expect("get after restart");
    assert_eq!(read.kvs().first().map(|kv| kv.value()), Some(&b"value"[..]));
    assert_eq!(read.kvs().first().map(|kv| kv.mod_revision()), revision);
}

#[tokio::test]
async fn a_paused_etcd_answers_nothing_until_resumed() {
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    client.put("k", "v", None).await.expect("put");

    etcd.server().pause();
    let frozen = tokio::time::timeout(Duration::from_millis(500), client.get("k", None)).await;
    assert!(frozen.is_err(), "a paused etcd answered: {frozen:?}");
    etcd.server().resume();
    let answered = tokio::time::timeout(Duration::from_secs(5), client.get("k", None)).await;
    assert!(
        matches!(answered, Ok(Ok(_))),
        "a resumed etcd did not answer: {answered:?}"
    );
}
