//! Pub/sub, cache and counters: the same contract in process and on Redis.

use std::time::Duration;

use crate::helpers::{Shape, TestEnv};

for_shapes!(
    [
        published_messages_reach_every_subscriber,
        cache_values_expire,
        counters_are_atomic_and_windowed,
    ]
    on local => Sqlite, redis => PostgresRedis
);

async fn published_messages_reach_every_subscriber(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let bus = env.bus().await;
    let mut first = bus.pubsub.subscribe("tenant:1:catalog").await.unwrap();
    let mut second = bus.pubsub.subscribe("tenant:1:catalog").await.unwrap();
    let mut other = bus.pubsub.subscribe("tenant:2:catalog").await.unwrap();
    // Redis subscriptions are confirmed by the server before messages flow.
    tokio::time::sleep(Duration::from_millis(100)).await;
    bus.pubsub
        .publish("tenant:1:catalog", "changed")
        .await
        .unwrap();
    for sub in [&mut first, &mut second] {
        let got = tokio::time::timeout(Duration::from_secs(5), sub.recv())
            .await
            .expect("delivered")
            .unwrap();
        assert_eq!(&*got, "changed");
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), other.recv())
            .await
            .is_err(),
        "a message stays on its channel"
    );
}

async fn cache_values_expire(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let cache = env.bus().await.cache;
    cache
        .set("k", "v1", Duration::from_millis(400))
        .await
        .unwrap();
    assert_eq!(cache.get("k").await.unwrap().as_deref(), Some("v1"));
    let ttl = cache.ttl("k").await.unwrap().expect("has a ttl");
    assert!(ttl <= Duration::from_millis(400) && ttl > Duration::ZERO);
    cache.set("k", "v2", Duration::from_secs(60)).await.unwrap();
    assert_eq!(
        cache.get("k").await.unwrap().as_deref(),
        Some("v2"),
        "set overwrites"
    );
    assert!(cache.delete("k").await.unwrap());
    assert!(!cache.delete("k").await.unwrap());
    assert_eq!(cache.get("k").await.unwrap(), None);

    cache
        .set("short", "x", Duration::from_millis(200))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        cache.get("short").await.unwrap(),
        None,
        "expired values are gone"
    );
    assert_eq!(cache.ttl("short").await.unwrap(), None);
}

async fn counters_are_atomic_and_windowed(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let cache = env.bus().await.cache;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let cache = cache.clone();
        tasks.spawn(async move {
            cache
                .incr("rl:key-1", 1, Duration::from_millis(700))
                .await
                .unwrap()
        });
    }
    let mut seen = Vec::new();
    while let Some(v) = tasks.join_next().await {
        seen.push(v.unwrap());
    }
    seen.sort();
    assert_eq!(
        seen,
        (1..=50).collect::<Vec<_>>(),
        "each increment sees a distinct value"
    );
    assert_eq!(
        cache
            .incr("rl:key-1", 5, Duration::from_secs(60))
            .await
            .unwrap(),
        55
    );
    let ttl = cache
        .ttl("rl:key-1")
        .await
        .unwrap()
        .expect("the window has an end");
    assert!(
        ttl <= Duration::from_millis(700),
        "the window is not extended by later increments"
    );
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(
        cache
            .incr("rl:key-1", 1, Duration::from_secs(1))
            .await
            .unwrap(),
        1,
        "a new window starts at zero"
    );
}

/// Two nodes sharing Redis: a message published on one reaches a subscriber on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_messages_cross_nodes() {
    let env = TestEnv::new(Shape::PostgresRedis).await;
    let node_a = env.bus().await;
    let node_b = env.bus().await;
    let mut sub = node_a.pubsub.subscribe("agents").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    node_b
        .pubsub
        .publish("agents", "task-created")
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .expect("crossed nodes")
        .unwrap();
    assert_eq!(&*got, "task-created");
    // And the cache is shared too.
    node_b
        .cache
        .set("shared", "yes", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        node_a.cache.get("shared").await.unwrap().as_deref(),
        Some("yes")
    );
}
