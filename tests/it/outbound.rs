//! The SSRF guard end to end, against loopback servers only: with the allowance off,
//! every way of naming a loopback address is refused before a connection is made; with
//! it on, requests go through, and redirects are checked again and lose their
//! credentials when they leave the origin. The private, link-local, unique-local and
//! unspecified ranges are proved through the guard's address check (unit tests of
//! `outbound`), so that no test ever sends traffic beyond loopback.

use devmesh::config::OutboundConfig;
use devmesh::outbound::{Outbound, OutboundError, OutboundRequest};
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use serde_json::Value;

use crate::upstream::Upstream;

fn guard(edit: impl FnOnce(&mut OutboundConfig)) -> Outbound {
    let mut config = OutboundConfig::default();
    edit(&mut config);
    Outbound::new(&config)
}

fn get(url: &str) -> OutboundRequest {
    OutboundRequest::get(url.parse().unwrap())
}

fn refused_range(outcome: Result<reqwest::Response, OutboundError>) -> &'static str {
    match outcome {
        Err(OutboundError::Refused(r)) => r.range,
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(r) => panic!("expected a refusal, got HTTP {}", r.status()),
    }
}

#[tokio::test]
async fn loopback_is_refused_by_address_name_and_ipv6_unless_allowed() {
    let upstream = Upstream::start().await;
    let port = upstream.addr.port();
    let strict = guard(|_| {});
    for url in [
        format!("http://127.0.0.1:{port}/echo"),
        format!("http://localhost:{port}/echo"),
        format!("http://[::1]:{port}/echo"),
        format!("http://[::ffff:127.0.0.1]:{port}/echo"),
        format!("http://0.0.0.0:{port}/echo"),
    ] {
        let range = refused_range(strict.send(get(&url)).await);
        assert!(
            range == "loopback" || range == "unspecified",
            "{url}: {range}"
        );
    }
    let err = strict
        .send(get(&upstream.url("/echo")))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("outbound.allow_private"), "{err}");

    let open = guard(|c| c.allow_private = true);
    let answer = open.send(get(&upstream.url("/echo"))).await.unwrap();
    assert_eq!(answer.status(), 200);

    let narrow = guard(|c| c.allow_cidrs = vec!["127.0.0.1/32".parse().unwrap()]);
    assert_eq!(
        narrow
            .send(get(&upstream.url("/echo")))
            .await
            .unwrap()
            .status(),
        200
    );
    // `localhost` may resolve to ::1 too: only the allowed address is connected to.
    let by_name = format!("http://localhost:{port}/echo");
    assert_eq!(narrow.send(get(&by_name)).await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_redirect_is_checked_again_and_capped() {
    let upstream = Upstream::start().await;
    let port = upstream.addr.port();
    let narrow = guard(|c| c.allow_cidrs = vec!["127.0.0.1/32".parse().unwrap()]);
    // From an allowed upstream to a loopback address outside the allowance.
    let to = format!("http://127.0.0.2:{port}/echo");
    let url = upstream.url(&format!("/redirect?to={}", urlencode(&to)));
    assert_eq!(refused_range(narrow.send(get(&url)).await), "loopback");

    // Within the allowance, followed.
    let to = upstream.url("/echo");
    let url = upstream.url(&format!("/redirect?to={}&status=307", urlencode(&to)));
    let echoed: Value = narrow.send(get(&url)).await.unwrap().json().await.unwrap();
    assert_eq!(echoed["path"], "/echo");

    // A redirect to itself, forever: stopped at the cap.
    let capped = guard(|c| {
        c.allow_private = true;
        c.max_redirects = 3;
    });
    let looping = upstream.url("/redirect?to=/redirect%3Fto%3D/redirect");
    let to_self = capped.send(get(&looping)).await;
    assert!(
        matches!(to_self, Err(OutboundError::TooManyRedirects(3))),
        "{to_self:?}"
    );

    // Schemes other than http(s) are never requested.
    let url = upstream.url("/redirect?to=file:///etc/passwd");
    assert!(matches!(
        capped.send(get(&url)).await,
        Err(OutboundError::BadUrl(..))
    ));
}

#[tokio::test]
async fn credentials_do_not_follow_a_redirect_to_another_origin() {
    let first = Upstream::start().await;
    let second = Upstream::start().await;
    let open = guard(|c| c.allow_private = true);
    let api_key = HeaderName::from_static("x-api-key");
    let request = |url: String| {
        let mut r = OutboundRequest::get(url.parse().unwrap());
        r.method = Method::POST;
        r.body = Some(bytes::Bytes::from_static(b"{\"a\":1}"));
        r.headers
            .insert(AUTHORIZATION, HeaderValue::from_static("Bearer sekrit"));
        r.headers
            .insert(api_key.clone(), HeaderValue::from_static("key-sekrit"));
        r.credential_headers = vec![AUTHORIZATION, api_key.clone()];
        r
    };

    // Same origin, 307: method, body and credentials kept.
    let same = first.url(&format!(
        "/redirect?status=307&to={}",
        urlencode(&first.url("/echo"))
    ));
    let echoed: Value = open
        .send(request(same))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echoed["method"], "POST");
    assert_eq!(echoed["body"], "{\"a\":1}");
    assert_eq!(echoed["headers"]["authorization"], "Bearer sekrit");
    assert_eq!(echoed["headers"]["x-api-key"], "key-sekrit");

    // Another origin (another port), 307: the credentials are dropped.
    let other = first.url(&format!(
        "/redirect?status=307&to={}",
        urlencode(&second.url("/echo"))
    ));
    let echoed: Value = open
        .send(request(other))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echoed["method"], "POST");
    assert!(echoed["headers"].get("authorization").is_none(), "{echoed}");
    assert!(echoed["headers"].get("x-api-key").is_none(), "{echoed}");

    // 303: a GET without the body.
    let see_other = first.url(&format!(
        "/redirect?status=303&to={}",
        urlencode(&first.url("/echo"))
    ));
    let echoed: Value = open
        .send(request(see_other))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echoed["method"], "GET");
    assert_eq!(echoed["body"], "");
}

#[tokio::test]
async fn a_refused_connection_and_a_timeout_say_which() {
    let open = guard(|c| c.allow_private = true);
    // A port nothing listens on (bound, then closed).
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/");
    let e = open.send(get(&url)).await.unwrap_err();
    assert!(matches!(e, OutboundError::Connect(..)), "{e}");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");

    // A server that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let _keep = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let mut request = get(&format!("http://{addr}/"));
    request.timeout = Some(std::time::Duration::from_millis(300));
    let e = open.send(request).await.unwrap_err();
    assert!(matches!(e, OutboundError::Timeout(..)), "{e}");
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
