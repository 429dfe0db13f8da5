//! The one outbound HTTP client, with the SSRF guard (DESIGN §3): every request devmesh
//! makes on a tenant's behalf (API discovery, tool calls, health checks, later webhooks
//! and upstream MCP servers) goes through [`Outbound`].
//!
//! The guard refuses addresses inside the operator's network unless allowed
//! (`outbound.allow_private`, `outbound.allow_cidrs`): loopback, private (RFC 1918),
//! shared (RFC 6598), link-local (RFC 3927, where cloud metadata lives at
//! 169.254.169.254), unique-local (RFC 4193), unspecified, multicast and broadcast, and
//! IPv4-mapped IPv6 forms of them. It checks:
//! - **the address connected to**: host names resolve through [`GuardedResolver`], which
//!   hands the connector only allowed addresses, so there is no window between a check
//!   and the connection for DNS rebinding; IP literals are checked before sending;
//! - **every redirect**: redirects are followed here, not by reqwest (at most
//!   `outbound.max_redirects`), each target checked again; a redirect to another origin
//!   drops the request's credential headers (which the caller names), and 301/302/303
//!   turn a non-GET request into a body-less GET as browsers do (RFC 9110 §15.4).
//!
//! No proxy from the environment is used: a proxy would resolve and connect for us.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, HeaderName, LOCATION};
use reqwest::{Method, StatusCode, Url};

use crate::config::OutboundConfig;

/// Why a request did not get an answer. Messages name the host and the reason, never a
/// credential.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OutboundError {
    /// The guard refused the address.
    #[error("{0}")]
    Refused(Refusal),
    #[error("the URL {0} cannot be requested: {1}")]
    BadUrl(String, String),
    #[error("more than {0} redirects")]
    TooManyRedirects(usize),
    #[error("no answer from {0} within {1:?}")]
    Timeout(String, Duration),
    #[error("cannot connect to {0}: {1}")]
    Connect(String, String),
    #[error("the request to {0} failed: {1}")]
    Failed(String, String),
}

/// An address the guard refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{host} resolves to {address}, {} {range} address, which outbound requests may not reach ({})", self.article(), self.allowance())]
pub struct Refusal {
    pub host: String,
    pub address: IpAddr,
    /// The kind of range: "loopback", "private", "link-local", ...
    pub range: &'static str,
}

impl Refusal {
    fn article(&self) -> &'static str {
        match self.range.as_bytes().first() {
            Some(b'a' | b'e' | b'i' | b'o' | b'u' | b'I' | b'O' | b'N' | b'U') => "an",
            _ => "a",
        }
    }

    /// The setting that would allow the address.
    fn allowance(&self) -> &'static str {
        if self.range == PUBLIC {
            "outbound.allow_public is false; allow it with outbound.allow_cidrs"
        } else {
            "allow it with outbound.allow_private = true or outbound.allow_cidrs"
        }
    }
}

/// The range of an address that is not internal.
pub const PUBLIC: &str = "public";

/// Which addresses requests may reach.
#[derive(Debug, Clone)]
pub struct AddressPolicy {
    pub allow_private: bool,
    /// Whether public addresses may be reached (an egress allow-list when false).
    pub allow_public: bool,
    pub allow: Vec<IpNet>,
}

impl Default for AddressPolicy {
    fn default() -> Self {
        Self {
            allow_private: false,
            allow_public: true,
            allow: Vec::new(),
        }
    }
}

impl AddressPolicy {
    /// The range that makes `ip` internal, if it is; `None` for a public address.
    pub fn internal_range(ip: IpAddr) -> Option<&'static str> {
        match ip {
            IpAddr::V4(v4) => v4_range(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4_range(v4),
                None => v6_range(v6),
            },
        }
    }

    /// Ok when requests may reach `ip` (of `host`).
    pub fn check(&self, host: &str, ip: IpAddr) -> Result<(), Refusal> {
        let range = Self::internal_range(ip);
        let allowed = match range {
            None => self.allow_public,
            Some(_) => self.allow_private,
        };
        if allowed || self.allow.iter().any(|net| net.contains(&ip)) {
            return Ok(());
        }
        let range = range.unwrap_or(PUBLIC);
        Err(Refusal {
            host: host.to_string(),
            address: ip,
            range,
        })
    }
}

fn v4_range(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(match () {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_unspecified() || a == 0 => "unspecified",
        _ if ip.is_private() => "private",
        _ if ip.is_link_local() => "link-local",
        _ if a == 100 && (64..128).contains(&b) => "shared (carrier-grade NAT)",
        _ if ip.is_broadcast() => "broadcast",
        _ if ip.is_multicast() => "multicast",
        _ if a == 192 && b == 0 && ip.octets()[2] == 0 => "IETF protocol assignment",
        // RFC 5737 documentation ranges and RFC 2544 benchmarking: never a real
        // destination, and sometimes the operator's own network in labs and clouds.
        _ if a == 192 && b == 0 && ip.octets()[2] == 2 => "documentation",
        _ if a == 198 && b == 51 && ip.octets()[2] == 100 => "documentation",
        _ if a == 203 && b == 0 && ip.octets()[2] == 113 => "documentation",
        _ if a == 198 && (b == 18 || b == 19) => "benchmarking",
        _ if a >= 240 => "reserved",
        _ => return None,
    })
}

/// The IPv4 address an IPv6 address carries by a translation or tunnel mechanism, which
/// a host with that mechanism configured reaches: NAT64 (RFC 6052 `64:ff9b::/96`) and
/// 6to4 (RFC 3056 `2002::/16`, the address in bits 16–48) and IPv4-translated
/// addresses (RFC 2765 `::ffff:0:0/96`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(v4(hi, lo)),
        [0x2002, hi, lo, ..] => Some(v4(hi, lo)),
        // IPv4-translated (RFC 2765, SIIT): ::ffff:0:a.b.c.d.
        [0, 0, 0, 0, 0xffff, 0, hi, lo] => Some(v4(hi, lo)),
        _ => None,
    }
}

fn v6_range(ip: Ipv6Addr) -> Option<&'static str> {
    // An address that carries an IPv4 one is judged by it (NAT64 of 169.254.169.254 is
    // the metadata service wherever NAT64 is set up).
    if let Some(v4) = embedded_v4(ip) {
        return v4_range(v4);
    }
    let first = ip.segments()[0];
    Some(match () {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_unspecified() => "unspecified",
        _ if (first & 0xfe00) == 0xfc00 => "unique-local",
        _ if (first & 0xffc0) == 0xfe80 => "link-local",
        _ if ip.is_multicast() => "multicast",
        // Deprecated site-local (RFC 3879) and the IPv4-compatible ::a.b.c.d form.
        _ if (first & 0xffc0) == 0xfec0 => "site-local",
        _ if ip.segments()[..6] == [0; 6] => "IPv4-compatible",
        // Local-use NAT64 (RFC 8215) and Teredo (RFC 4380), whose IPv4 address is hidden.
        _ if ip.segments()[..3] == [0x64, 0xff9b, 1] => "NAT64 local-use",
        _ if ip.segments()[..2] == [0x2001, 0] => "Teredo",
        // Documentation (RFC 3849, RFC 9637), discard-only (RFC 6666), ORCHID (RFC 7343).
        _ if ip.segments()[..2] == [0x2001, 0xdb8] => "documentation",
        _ if (first & 0xfff0) == 0x3ff0 => "documentation",
        _ if ip.segments()[..4] == [0x100, 0, 0, 0] => "discard-only",
        _ if first == 0x2001 && (0x10..0x30).contains(&ip.segments()[1]) => "ORCHID",
        _ => return None,
    })
}

/// Resolves host names and keeps only the addresses the policy allows; when it allows
/// none, fails with the [`Refusal`] of the first.
pub struct GuardedResolver {
    policy: Arc<AddressPolicy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut first_refusal = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match policy.check(&host, a.ip()) {
                    Ok(()) => true,
                    Err(r) => {
                        first_refusal.get_or_insert(r);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let error: Box<dyn std::error::Error + Send + Sync> = match first_refusal {
                    Some(refusal) => Box::new(refusal),
                    None => format!("{host} has no address").into(),
                };
                return Err(error);
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// A request to send: the parts the guard needs to follow redirects itself.
#[derive(Debug, Clone)]
pub struct OutboundRequest {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Option<bytes::Bytes>,
    /// Headers that carry a credential: dropped when a redirect leaves the origin.
    pub credential_headers: Vec<HeaderName>,
    /// The whole exchange, redirects included; `outbound.timeout` when `None`.
    pub timeout: Option<Duration>,
}

impl OutboundRequest {
    pub fn get(url: Url) -> Self {
        Self {
            method: Method::GET,
            url,
            headers: HeaderMap::new(),
            body: None,
            credential_headers: Vec::new(),
            timeout: None,
        }
    }
}

/// The guarded client. Cheap to clone.
#[derive(Clone)]
pub struct Outbound {
    client: reqwest::Client,
    policy: Arc<AddressPolicy>,
    max_redirects: usize,
    timeout: Duration,
}

impl Outbound {
    pub fn new(config: &OutboundConfig) -> Self {
        let policy = Arc::new(AddressPolicy {
            allow_private: config.allow_private,
            allow_public: config.allow_public,
            allow: config.allow_cidrs.clone(),
        });
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver {
                policy: policy.clone(),
            }))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(config.connect_timeout.get())
            .user_agent(concat!("devmesh/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the outbound HTTP client builds");
        Self {
            client,
            policy,
            max_redirects: config.max_redirects as usize,
            timeout: config.timeout.get(),
        }
    }

    pub fn policy(&self) -> &AddressPolicy {
        &self.policy
    }

    /// Checks a URL before any request: scheme http or https, and an IP literal host
    /// allowed by the policy (host names are checked as they resolve).
    pub fn check_url(&self, url: &Url) -> Result<(), OutboundError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(OutboundError::BadUrl(
                redacted(url),
                format!("the scheme {:?} is not http or https", url.scheme()),
            ));
        }
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => None,
            None => {
                return Err(OutboundError::BadUrl(
                    redacted(url),
                    "it has no host".into(),
                ));
            }
        };
        if let Some(ip) = literal {
            self.policy
                .check(url.host_str().unwrap_or_default(), ip)
                .map_err(OutboundError::Refused)?;
        }
        Ok(())
    }

    /// Sends a request, following redirects under the guard. The answer's body is the
    /// caller's to read (within its own limits).
    pub async fn send(&self, request: OutboundRequest) -> Result<reqwest::Response, OutboundError> {
        let within = request.timeout.unwrap_or(self.timeout);
        let host = host_of(&request.url);
        match tokio::time::timeout(within, self.follow(request)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(OutboundError::Timeout(host, within)),
        }
    }

    async fn follow(
        &self,
        mut request: OutboundRequest,
    ) -> Result<reqwest::Response, OutboundError> {
        let mut redirects = 0;
        loop {
            self.check_url(&request.url)?;
            let mut builder = self
                .client
                .request(request.method.clone(), request.url.clone())
                .headers(request.headers.clone());
            if let Some(body) = &request.body {
                builder = builder.body(body.clone());
            }
            let response = builder
                .send()
                .await
                .map_err(|e| classify(&request.url, e))?;
            let status = response.status();
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let (true, Some(location)) = (status.is_redirection(), location) else {
                return Ok(response);
            };
            if status == StatusCode::NOT_MODIFIED {
                return Ok(response);
            }
            redirects += 1;
            if redirects > self.max_redirects {
                return Err(OutboundError::TooManyRedirects(self.max_redirects));
            }
            let next = request.url.join(&location).map_err(|e| {
                OutboundError::BadUrl(location.chars().take(200).collect(), e.to_string())
            })?;
            if next.origin() != request.url.origin() {
                for name in &request.credential_headers {
                    request.headers.remove(name);
                }
                request.credential_headers.clear();
            }
            let becomes_get = status == StatusCode::SEE_OTHER
                || (matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND)
                    && request.method != Method::GET
                    && request.method != Method::HEAD);
            if becomes_get {
                request.method = Method::GET;
                request.body = None;
                request.headers.remove(reqwest::header::CONTENT_TYPE);
                request.headers.remove(reqwest::header::CONTENT_LENGTH);
            }
            request.url = next;
        }
    }
}

/// Scheme, host and port of a URL (no path, query or user info: they may hold secrets).
pub fn host_of(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => "(no host)".into(),
    }
}

/// A URL fit for messages: scheme, host, port and path only.
pub fn redacted(url: &Url) -> String {
    format!("{}://{}{}", url.scheme(), host_of(url), url.path())
}

fn classify(url: &Url, e: reqwest::Error) -> OutboundError {
    let host = host_of(url);
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = source {
        if let Some(refusal) = s.downcast_ref::<Refusal>() {
            return OutboundError::Refused(refusal.clone());
        }
        source = s.source();
    }
    let detail = innermost(&e);
    if e.is_connect() {
        OutboundError::Connect(host, detail)
    } else if e.is_timeout() {
        OutboundError::Timeout(host, Duration::ZERO)
    } else {
        OutboundError::Failed(host, detail)
    }
}

/// The innermost cause's message (reqwest's own says only "error sending request").
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(s) = last.source() {
        last = s;
    }
    last.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn internal_ranges_are_named_and_public_addresses_pass() {
        for (address, range) in [
            ("127.0.0.1", "loopback"),
            ("127.8.9.10", "loopback"),
            ("::1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("fe80::1", "link-local"),
            ("fc00::1", "unique-local"),
            ("fd12:3456::1", "unique-local"),
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("100.64.0.1", "shared (carrier-grade NAT)"),
            ("255.255.255.255", "broadcast"),
            ("224.0.0.1", "multicast"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::ffff:10.0.0.1", "private"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("64:ff9b::7f00:1", "loopback"),
            ("2002:7f00:1::", "loopback"),
            ("2002:a00:1::1", "private"),
            ("64:ff9b:1::1", "NAT64 local-use"),
            ("::ffff:0:7f00:1", "loopback"),
            ("192.0.2.1", "documentation"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"),
            ("198.18.0.1", "benchmarking"),
            ("2001:db8::1", "documentation"),
            ("3fff::1", "documentation"),
            ("100::1", "discard-only"),
            ("2001:10::1", "ORCHID"),
            ("2001:0:4136:e378::1", "Teredo"),
        ] {
            assert_eq!(
                AddressPolicy::internal_range(ip(address)),
                Some(range),
                "{address}"
            );
        }
        for public in [
            "64:ff9b::808:808",
            "2002:808:808::1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "1.1.1.1",
        ] {
            assert_eq!(AddressPolicy::internal_range(ip(public)), None, "{public}");
        }
    }

    #[test]
    fn allowances_open_only_what_they_name() {
        let strict = AddressPolicy::default();
        let refusal = strict.check("metadata", ip("169.254.169.254")).unwrap_err();
        assert_eq!(refusal.range, "link-local");
        assert!(refusal.to_string().contains("outbound.allow_private"));
        assert!(strict.check("example", ip("8.8.8.8")).is_ok());

        let some = AddressPolicy {
            allow: vec!["10.0.0.0/8".parse().unwrap()],
            ..AddressPolicy::default()
        };
        assert!(some.check("a", ip("10.9.9.9")).is_ok());
        // An egress allow-list: no public address unless named.
        let listed = AddressPolicy {
            allow_public: false,
            allow: vec!["203.0.113.0/24".parse().unwrap()],
            ..AddressPolicy::default()
        };
        let refusal = listed.check("example", ip("8.8.8.8")).unwrap_err();
        assert_eq!(refusal.range, PUBLIC);
        assert!(refusal.to_string().contains("outbound.allow_public"));
        assert!(listed.check("doc", ip("203.0.113.7")).is_ok());
        assert!(listed.check("lo", ip("127.0.0.1")).is_err());
        assert!(some.check("b", ip("192.168.0.1")).is_err());
        assert!(some.check("c", ip("127.0.0.1")).is_err());

        let all = AddressPolicy {
            allow_private: true,
            ..AddressPolicy::default()
        };
        assert!(all.check("d", ip("::1")).is_ok());
    }
}
