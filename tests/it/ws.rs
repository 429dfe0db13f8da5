//! MCP over WebSocket at `/ws`: both protocol eras, binary frames, liveness,
//! backpressure, caps, push across nodes and the connection hub.

use std::time::Duration;

use devmesh::mcp::ws::frame::{self, Compression};
use devmesh::mcp::ws::hub::{Delivery, DeliveryError};
use serde_json::{Value, json};

use crate::helpers::{Shape, TestApp, TestEnv};
use crate::rest::{self, register};
use crate::ws_client::{Frame, Ws, connect, modern, request, try_connect, ws_url};

async fn app(env: &mut TestEnv, configure: impl FnOnce(&mut devmesh::config::Config)) -> TestApp {
    env.config.mcp.conformance_fixtures = true;
    configure(&mut env.config);
    let app = env.spawn_app().await;
    app.wait_ready().await;
    app
}

fn text_of(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap_or("")
}

/// Session era: the connection is the session; tools, resources, subscriptions,
/// progress and cancellation over text frames.
async fn session_era_over_text_frames(shape: Shape) {
    let mut env = TestEnv::new(shape).await;
    let app = app(&mut env, |_| {}).await;
    let tenant = register(&app, "acme").await;
    let mut ws = connect(&app, &tenant.key).await;

    let init = ws.initialize().await;
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
    assert_eq!(init["result"]["serverInfo"]["name"], "devmesh");
    let again = ws
        .call(
            1,
            "initialize",
            json!({ "protocolVersion": "2025-11-25", "capabilities": {} }),
        )
        .await;
    assert_eq!(again["error"]["code"], -32600, "{again}");
    assert!(
        again["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already initialized")
    );

    let tools = ws.call(2, "tools/list", json!({})).await;
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"devmesh_context_create"), "{names:?}");
    assert!(
        tools["result"].get("resultType").is_none(),
        "no 2026 fields in a session"
    );

    let created = ws
        .call(
            3,
            "tools/call",
            json!({ "name": "devmesh_context_create", "arguments": { "name": "over ws" } }),
        )
        .await;
    let id = created["result"]["structuredContent"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let uri = format!("devmesh://contexts/{id}");
    let sub = ws
        .call(4, "resources/subscribe", json!({ "uri": uri }))
        .await;
    assert_eq!(sub["result"], json!({}));

    // A change made over REST is pushed to the subscribed connection.
    let r = rest::call(
        &app,
        "POST",
        &format!("/api/v1/contexts/{id}/items"),
        Some(&tenant.key),
        Some(&json!({ "items": [{ "role": "user", "content": "hello" }] })),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let pushed = ws.message().await;
    assert_eq!(
        pushed.message()["method"],
        "notifications/resources/updated"
    );
    assert_eq!(pushed.message()["params"]["uri"], uri.as_str());

    let read = ws.call(5, "resources/read", json!({ "uri": uri })).await;
    assert!(
        read["result"]["contents"][0]["text"]
            .as_str()
            .unwrap()
            .contains("hello")
    );

    // Progress comes before the result, in the request's frame kind.
    ws.send_text(&request(
        6,
        "tools/call",
        json!({ "name": "test_countdown", "arguments": { "steps": 3, "interval_ms": 10 }, "_meta": { "progressToken": "p6" } }),
    ))
    .await;
    let (result, before) = ws.answer(6).await;
    assert_eq!(text_of(&result.message()["result"]), "Counted 3 steps");
    let progress: Vec<&Value> = before
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 3, "{before:?}");
    assert_eq!(progress[2]["params"]["progress"], 3.0);

    // Cancelling a long call: no answer to it, and the next request is served.
    ws.send_text(&request(
        7,
        "tools/call",
        json!({ "name": "test_countdown", "arguments": { "steps": 600, "interval_ms": 100 } }),
    ))
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    ws.send_text(&json!({ "jsonrpc": "2.0", "method": "notifications/cancelled", "params": { "requestId": 7 } }))
        .await;
    ws.send_text(&request(8, "ping", json!({}))).await;
    let (pong, before) = ws.answer(8).await;
    assert_eq!(pong.message()["result"], json!({}));
    assert!(before.iter().all(|m| m["id"] != json!(7)), "{before:?}");
    let metrics = app.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("devmesh_mcp_cancelled_total{method=\"tools/call\"}")),
        "the cancelled call is counted"
    );
}

/// 2026-07-28 over text frames: each request carries its `_meta`; listen streams
/// notifications tagged with the listen request's id until cancelled.
async fn stateless_era_over_text_frames(shape: Shape) {
    let mut env = TestEnv::new(shape).await;
    let app = app(&mut env, |_| {}).await;
    let tenant = register(&app, "acme").await;
    let mut ws = connect(&app, &tenant.key).await;

    ws.send_text(&modern(
        1,
        "tools/call",
        json!({ "name": "devmesh_whoami", "arguments": {} }),
    ))
    .await;
    let (whoami, _) = ws.answer(1).await;
    let result = &whoami.message()["result"];
    assert_eq!(result["resultType"], "complete");
    assert_eq!(
        result["structuredContent"]["organization_id"],
        tenant.org_id.as_str(),
        "{result}"
    );

    // Without _meta and without a session: told what to do.
    let bare = ws.call(2, "tools/list", json!({})).await;
    assert_eq!(bare["error"]["code"], -32600, "{bare}");
    assert!(
        bare["error"]["message"]
            .as_str()
            .unwrap()
            .contains("initialize"),
        "{bare}"
    );
    // Session-only methods do not exist in 2026-07-28.
    ws.send_text(&modern(3, "logging/setLevel", json!({ "level": "info" })))
        .await;
    assert_eq!(ws.answer(3).await.0.message()["error"]["code"], -32601);
    // An unknown version is named.
    let mut unknown = modern(4, "tools/list", json!({}));
    unknown["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2099-01-01");
    ws.send_text(&unknown).await;
    let (answer, _) = ws.answer(4).await;
    assert_eq!(answer.message()["error"]["code"], -32022, "{answer:?}");
    // Not JSON at all: a parse error, and the connection stays.
    ws.stream
        .send(tokio_tungstenite::tungstenite::Message::text("{not json"))
        .await
        .unwrap();
    let parse = ws.message().await;
    assert_eq!(parse.message()["error"]["code"], -32700);

    let listen_params = json!({ "notifications": { "toolsListChanged": true } });
    ws.send_text(&modern(10, "subscriptions/listen", listen_params))
        .await;
    let ack = ws.message().await;
    assert_eq!(
        ack.message()["method"],
        "notifications/subscriptions/acknowledged"
    );
    ws.send_text(&modern(
        11,
        "tools/call",
        json!({ "name": "test_trigger_tool_change", "arguments": {} }),
    ))
    .await;
    let (_, before) = ws.answer(11).await;
    let changed = match before
        .iter()
        .find(|m| m["method"] == "notifications/tools/list_changed")
    {
        Some(m) => m.clone(),
        None => ws.message().await.message().clone(),
    };
    assert_eq!(changed["method"], "notifications/tools/list_changed");
    assert_eq!(
        changed["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        10
    );
    // Cancelled: no more notifications from it.
    ws.send_text(&json!({ "jsonrpc": "2.0", "method": "notifications/cancelled", "params": { "requestId": 10 } }))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    ws.send_text(&modern(
        12,
        "tools/call",
        json!({ "name": "test_trigger_tool_change", "arguments": {} }),
    ))
    .await;
    ws.send_text(&modern(13, "server/discover", json!({})))
        .await;
    let (_, before) = ws.answer(13).await;
    assert!(
        before
            .iter()
            .all(|m| m["method"] != "notifications/tools/list_changed"),
        "{before:?}"
    );
}

use futures_util::SinkExt;

/// Binary frames with each compression are answered in kind; text and binary mix on one
/// connection, each answered in the kind it came in.
async fn binary_frames_are_answered_in_kind(shape: Shape) {
    let mut env = TestEnv::new(shape).await;
    let app = app(&mut env, |_| {}).await;
    let tenant = register(&app, "acme").await;
    let mut ws = connect(&app, &tenant.key).await;
    let call = |id| {
        modern(
            id,
            "tools/call",
            json!({ "name": "devmesh_whoami", "arguments": {} }),
        )
    };

    for (id, c) in [
        (1, Compression::Zstd),
        (2, Compression::Gzip),
        (3, Compression::None),
    ] {
        ws.send_binary(&call(id), c).await;
        match ws.message().await {
            Frame::Binary(answer, seen) => {
                assert_eq!(seen, c);
                assert_eq!(answer["id"], id);
                assert_eq!(
                    answer["result"]["structuredContent"]["organization_id"],
                    tenant.org_id.as_str()
                );
            }
            other => panic!("a binary answer to a binary request, got {other:?}"),
        }
    }
    // Mixed, in flight together.
    ws.send_text(&call(10)).await;
    ws.send_binary(&call(11), Compression::Zstd).await;
    ws.send_text(&call(12)).await;
    let mut kinds = std::collections::BTreeMap::new();
    for _ in 0..3 {
        let frame = ws.message().await;
        let kind = match &frame {
            Frame::Text(_) => "text",
            Frame::Binary(_, Compression::Zstd) => "zstd",
            other => panic!("unexpected {other:?}"),
        };
        kinds.insert(frame.message()["id"].as_i64().unwrap(), kind);
    }
    assert_eq!(
        kinds,
        [(10, "text"), (11, "zstd"), (12, "text")]
            .into_iter()
            .collect()
    );
    // Push follows the kind of the client's latest frame.
    ws.send_binary(
        &request(
            20,
            "initialize",
            json!({ "protocolVersion": "2025-11-25", "capabilities": {} }),
        ),
        Compression::Gzip,
    )
    .await;
    assert!(matches!(
        ws.message().await,
        Frame::Binary(_, Compression::Gzip)
    ));
    let delivery = app
        .caps
        .mcp
        .hub
        .send(&app.ctx, &tenant.org_id, &ws.connection_id, &json!({ "jsonrpc": "2.0", "method": "notifications/message", "params": { "level": "info", "data": "hi" } }))
        .await;
    assert_eq!(delivery, Ok(Delivery::Queued));
    match ws.message().await {
        Frame::Binary(m, Compression::Gzip) => assert_eq!(m["params"]["data"], "hi"),
        other => panic!("pushed in the latest kind, got {other:?}"),
    }
}

/// Each bad binary frame closes the connection with a code and a reason; the node goes
/// on serving everyone else.
async fn bad_frames_close_cleanly(shape: Shape) {
    let mut env = TestEnv::new(shape).await;
    let app = app(&mut env, |c| c.mcp.max_message_bytes = 64 * 1024).await;
    let tenant = register(&app, "acme").await;
    let good = frame::encode(
        br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        Compression::Zstd,
    );
    let mut truncated = good.clone();
    truncated.truncate(good.len() - 2);
    let mut wrong_flag = frame::encode(
        br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        Compression::Gzip,
    );
    wrong_flag[3] = 1; // says zstd
    let mut corrupt = good.clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xFF;
    let mut reserved = good.clone();
    reserved[3] |= 0b1000_0000;
    let bomb = frame::encode(&vec![b' '; 1024 * 1024], Compression::Zstd);
    let mut huge_length = good[..8].to_vec();
    huge_length[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    let cases: [(&str, Vec<u8>, u16, &str); 7] = [
        (
            "short header",
            vec![b'D', b'M', 1],
            1002,
            "shorter than its 8-byte header",
        ),
        ("truncated", truncated, 1002, "payload bytes but carries"),
        (
            "wrongly flagged",
            wrong_flag,
            1007,
            "cannot be decompressed as zstd",
        ),
        ("corrupt", corrupt, 1007, "cannot be decompressed"),
        ("reserved flags", reserved, 1003, "reserved bits"),
        (
            "decompression bomb",
            bomb,
            1009,
            "larger than the limit of 65536 bytes",
        ),
        (
            "declared too large",
            huge_length,
            1009,
            "larger than the limit",
        ),
    ];
    for (name, bytes, code, reason) in cases {
        let mut ws = connect(&app, &tenant.key).await;
        ws.send_raw(bytes).await;
        let (got, why) = ws.closed().await;
        assert_eq!(got, code, "{name}: {why}");
        assert!(why.contains(reason), "{name}: {why}");
    }
    // A text frame over the limit closes with 1009 too.
    let mut ws = connect(&app, &tenant.key).await;
    ws.send_text(&json!({ "big": "x".repeat(70 * 1024) })).await;
    assert_eq!(ws.closed().await.0, 1009);
    // A text frame that is not UTF-8 is data that does not match its type: 1007.
    let mut ws = connect(&app, &tenant.key).await;
    let not_utf8 = tokio_tungstenite::tungstenite::protocol::frame::Frame::message(
        vec![b'{', 0xC3, 0x28, b'}'],
        tokio_tungstenite::tungstenite::protocol::frame::coding::OpCode::Data(
            tokio_tungstenite::tungstenite::protocol::frame::coding::Data::Text,
        ),
        true,
    );
    futures_util::SinkExt::send(
        &mut ws.stream,
        tokio_tungstenite::tungstenite::Message::Frame(not_utf8),
    )
    .await
    .unwrap();
    assert_eq!(ws.closed().await.0, 1007);
    // The node is fine.
    let mut ws = connect(&app, &tenant.key).await;
    ws.send_binary(&modern(1, "server/discover", json!({})), Compression::Zstd)
        .await;
    assert!(ws.message().await.message()["result"]["supportedVersions"].is_array());
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("devmesh_ws_closed_total{reason=\"bad_frame\"}"),
        "{metrics}"
    );
}

/// Credentials are checked before the upgrade: header or `token` query parameter.
async fn credentials_are_checked_before_the_upgrade(shape: Shape) {
    let mut env = TestEnv::new(shape).await;
    let app = app(&mut env, |_| {}).await;
    let tenant = register(&app, "acme").await;
    let url = ws_url(&app);

    let none = try_connect(&url, None).await.err().expect("refused");
    assert_eq!(none.status, 401);
    assert_eq!(none.body["error"]["code"], -31001, "{:?}", none.body);
    let bad = try_connect(&url, Some("dm_live_not_a_real_key"))
        .await
        .err()
        .expect("refused");
    assert_eq!(bad.status, 401);
    let bad_query = try_connect(&format!("{url}?token=nonsense"), None)
        .await
        .err()
        .expect("refused");
    assert_eq!(bad_query.status, 401);

    let mut by_query = try_connect(&format!("{url}?token={}", tenant.key), None)
        .await
        .expect("a key in the query is accepted");
    by_query
        .send_text(&modern(
            1,
            "tools/call",
            json!({ "name": "devmesh_whoami", "arguments": {} }),
        ))
        .await;
    let (answer, _) = by_query.answer(1).await;
    assert_eq!(
        answer.message()["result"]["structuredContent"]["organization_id"],
        tenant.org_id.as_str()
    );

    // A browser page from an origin that is not allowed is refused.
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            url.as_str(),
        )
        .unwrap();
    request
        .headers_mut()
        .insert("origin", "https://evil.example.com".parse().unwrap());
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", tenant.key).parse().unwrap(),
    );
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("refused for its origin, got {:?}", other.map(|_| ())),
    }
    // A plain GET that is not an upgrade is a clear 400.
    let plain = app
        .http
        .get(app.mcp_url("/ws"))
        .bearer_auth(&tenant.key)
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 400);
    let body: Value = plain.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a WebSocket upgrade"),
        "{body}"
    );
}

/// The server pings; a client that answers stays, one that does not is closed (4002);
/// a client's ping is answered.
async fn pings_keep_live_peers_and_close_dead_ones(shape: Shape) {
    let mut env = TestEnv::new(shape).await;
    let app = app(&mut env, |c| {
        c.mcp.ws.ping_interval = devmesh::config::Duration::from_millis(200)
    })
    .await;
    let tenant = register(&app, "acme").await;

    // A reading client answers pings (the client library pongs as it reads).
    let mut live = connect(&app, &tenant.key).await;
    let mut pings = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(1200);
    while tokio::time::Instant::now() < until {
        if let Frame::Ping = live.next(Duration::from_secs(2)).await {
            pings += 1;
        }
    }
    assert!(pings >= 3, "pinged {pings} times");
    live.stream
        .send(tokio_tungstenite::tungstenite::Message::Ping(
            b"are you there".to_vec().into(),
        ))
        .await
        .unwrap();
    let pong = loop {
        match tokio::time::timeout(
            Duration::from_secs(5),
            futures_util::StreamExt::next(&mut live.stream),
        )
        .await
        {
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Pong(p)))) => break p,
            Ok(Some(Ok(_))) => continue,
            other => panic!("a pong, got {other:?}"),
        }
    };
    assert_eq!(&pong[..], b"are you there");
    live.send_text(&modern(1, "server/discover", json!({})))
        .await;
    assert!(
        live.answer(1).await.0.message()["result"].is_object(),
        "still open"
    );

    // A client that stops answering (it reads nothing, so it sends no pong).
    let mut dead = connect(&app, &tenant.key).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (code, reason) = dead.closed().await;
    assert_eq!(code, devmesh::mcp::ws::close::PING_TIMEOUT, "{reason}");
    assert!(reason.contains("no answer to a ping"), "{reason}");
}

/// A client that stops reading is closed (4001) once its queue fills, instead of the
/// server's memory growing.
async fn slow_consumers_are_closed(shape: Shape) {
    let mut env = TestEnv::new(shape).await;
    let app = app(&mut env, |c| c.mcp.ws.outbound_queue = 16).await;
    let tenant = register(&app, "acme").await;
    // A small receive window, so that the kernel holds little for the client.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(app.mcp).await.unwrap();
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            ws_url(&app).as_str(),
        )
        .unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", tenant.key).parse().unwrap(),
    );
    let (stream, response) =
        tokio_tungstenite::client_async(request, tokio_tungstenite::MaybeTlsStream::Plain(tcp))
            .await
            .unwrap();
    let id = response.headers()["devmesh-connection-id"]
        .to_str()
        .unwrap()
        .to_string();
    let mut ws = Ws {
        stream,
        connection_id: id.clone(),
    };

    // The service sends large messages while the client reads nothing.
    let big = json!({ "jsonrpc": "2.0", "method": "notifications/message", "params": { "level": "info", "data": "x".repeat(16 * 1024) } });
    let mut refused = None;
    for n in 0..20_000 {
        match app
            .caps
            .mcp
            .hub
            .send(&app.ctx, &tenant.org_id, &id, &big)
            .await
        {
            Ok(_) => {}
            Err(e) => {
                refused = Some((n, e));
                break;
            }
        }
        if n % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let (sent, error) = refused.expect("the queue fills up");
    assert_eq!(error, DeliveryError::Behind(id.clone()), "after {sent}");
    // When the client reads again: what was written, then the close that says why.
    let (code, reason) = ws.closed().await;
    assert_eq!(code, devmesh::mcp::ws::close::SLOW_CONSUMER, "{reason}");
    assert!(reason.contains("slow consumer"), "{reason}");
    // Gone from the hub.
    crate::helpers::wait_until(Duration::from_secs(5), || async {
        app.caps
            .mcp
            .hub
            .local_connections(&tenant.org_id)
            .is_empty()
    })
    .await
    .expect("the connection is unregistered");
}

/// Connections per key and per node are capped, with a clear refusal.
async fn connections_are_capped(shape: Shape) {
    let mut env = TestEnv::new(shape).await;
    let app = app(&mut env, |c| {
        c.mcp.ws.max_connections_per_key = 2;
        c.mcp.ws.max_connections = 3;
    })
    .await;
    let tenant = register(&app, "acme").await;
    let (_, second_key) = rest::new_key(
        &app,
        &tenant,
        json!({ "name": "second", "key_type": "agent" }),
    )
    .await;
    let url = ws_url(&app);
    let a = connect(&app, &tenant.key).await;
    let _b = connect(&app, &tenant.key).await;
    let third = try_connect(&url, Some(&tenant.key))
        .await
        .err()
        .expect("over the key's cap");
    assert_eq!(third.status, 429);
    assert!(
        third.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_connections_per_key"),
        "{:?}",
        third.body
    );
    let _c = connect(&app, &second_key).await;
    let fourth = try_connect(&url, Some(&second_key))
        .await
        .err()
        .expect("over the node's cap");
    assert_eq!(fourth.status, 503);
    assert!(
        fourth.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("mcp.ws.max_connections"),
        "{:?}",
        fourth.body
    );
    // A closed connection gives its place back.
    drop(a);
    crate::helpers::wait_until(Duration::from_secs(5), || async {
        try_connect(&url, Some(&tenant.key)).await.is_ok()
    })
    .await
    .expect("a place frees up");
}

/// A change made on another node reaches a WebSocket session; a service on another node
/// sends to a connection by id; nothing crosses tenants.
async fn push_and_delivery_cross_nodes(shape: Shape) {
    let mut env = TestEnv::new(shape).await;
    let here = app(&mut env, |_| {}).await;
    // In the embedded shape there is one node: the same paths, without the bus hop.
    let second = if shape == Shape::PostgresRedis {
        let app = env.spawn_other_node("second").await;
        app.wait_ready().await;
        Some(app)
    } else {
        None
    };
    let there = second.as_ref().unwrap_or(&here);
    let tenant = register(&here, "acme").await;
    let other = register(&here, "other").await;
    let mut ws = connect(&here, &tenant.key).await;
    ws.initialize().await;
    let created = ws
        .call(
            1,
            "tools/call",
            json!({ "name": "devmesh_context_create", "arguments": { "name": "watched" } }),
        )
        .await;
    let id = created["result"]["structuredContent"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let uri = format!("devmesh://contexts/{id}");
    ws.call(2, "resources/subscribe", json!({ "uri": uri }))
        .await;

    let r = rest::call(
        there,
        "POST",
        &format!("/api/v1/contexts/{id}/items"),
        Some(&tenant.key),
        Some(&json!({ "items": [{ "role": "user", "content": "from the other node" }] })),
    )
    .await;
    assert_eq!(r.status, 201);
    let pushed = ws.message().await;
    assert_eq!(
        pushed.message()["method"],
        "notifications/resources/updated"
    );
    assert_eq!(pushed.message()["params"]["uri"], uri.as_str());

    // The registry says where the connection is, from either node.
    let info = there
        .caps
        .mcp
        .hub
        .lookup(&there.ctx, &ws.connection_id)
        .await
        .expect("registered");
    assert_eq!(info.node_id, here.ctx.node.id);
    assert_eq!(info.organization_id, tenant.org_id);
    assert_eq!(info.principal_type, "api_key");
    let task = json!({ "jsonrpc": "2.0", "method": "notifications/message", "params": { "level": "info", "data": { "task": 42 } } });
    let delivery = there
        .caps
        .mcp
        .hub
        .send(&there.ctx, &tenant.org_id, &ws.connection_id, &task)
        .await;
    let expected = match second {
        Some(_) => Delivery::Forwarded {
            node_id: here.ctx.node.id.clone(),
        },
        None => Delivery::Queued,
    };
    assert_eq!(delivery, Ok(expected));
    let got = ws.message().await;
    assert_eq!(got.message()["params"]["data"]["task"], 42);
    // Another tenant cannot address it, nor can anyone address an unknown id.
    let denied = there
        .caps
        .mcp
        .hub
        .send(&there.ctx, &other.org_id, &ws.connection_id, &task)
        .await;
    assert_eq!(
        denied,
        Err(DeliveryError::NotConnected(ws.connection_id.clone()))
    );
    let unknown = there
        .caps
        .mcp
        .hub
        .send(&there.ctx, &tenant.org_id, "ws-nope", &task)
        .await;
    assert_eq!(unknown, Err(DeliveryError::NotConnected("ws-nope".into())));
    // Nothing else arrived.
    ws.send_text(&request(3, "ping", json!({}))).await;
    let (_, before) = ws.answer(3).await;
    assert!(before.is_empty(), "{before:?}");

    // Closed: unregistered everywhere.
    let connection_id = ws.connection_id.clone();
    drop(ws);
    crate::helpers::wait_until(Duration::from_secs(5), || async {
        there
            .caps
            .mcp
            .hub
            .lookup(&there.ctx, &connection_id)
            .await
            .is_none()
    })
    .await
    .expect("the entry is removed");
}

/// Shutting the node down closes its connections with 1001.
async fn shutdown_closes_connections(shape: Shape) {
    let mut env = TestEnv::new(shape).await;
    let app = app(&mut env, |_| {}).await;
    let tenant = register(&app, "acme").await;
    let mut ws = connect(&app, &tenant.key).await;
    let stopping = tokio::spawn(app.stop());
    let (code, reason) = ws.closed().await;
    assert_eq!(code, 1001, "{reason}");
    assert!(reason.contains("shutting down"), "{reason}");
    stopping.await.unwrap().expect("the node stops cleanly");
}

for_shapes!([
    session_era_over_text_frames,
    stateless_era_over_text_frames,
    binary_frames_are_answered_in_kind,
    bad_frames_close_cleanly,
    credentials_are_checked_before_the_upgrade,
    pings_keep_live_peers_and_close_dead_ones,
    slow_consumers_are_closed,
    connections_are_capped,
    shutdown_closes_connections,
    push_and_delivery_cross_nodes,
] on sqlite => Sqlite, redis => PostgresRedis);
