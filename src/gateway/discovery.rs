//! Finding an API's description from its base URL: the URL the operator gave, then the
//! paths they hinted, then the paths hosts of the same kind answered before (learned),
//! then the well-known ones ([`WELL_KNOWN`]), each relative to the base URL and then to
//! its origin. Every try is recorded with why it failed, so that `GET /tools/{id}` can
//! say what was tried. Requests go through the outbound client (the SSRF guard), and the
//! files a description references are fetched from its origin only.

use reqwest::header::{ACCEPT, HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use url::Url;

use super::document::{DocumentError, DocumentSet, Limits, LoadError, Source};
use super::{Api, convert};
use crate::outbound::{Outbound, OutboundError, OutboundRequest, redacted};

/// Where real APIs serve their descriptions, most common first: FastAPI, Argo CD and
/// many others (`/openapi.json`, `/swagger.json`), springdoc (`/v3/api-docs`), springfox
/// (`/v2/api-docs`), ASP.NET Swashbuckle (`/swagger/v1/swagger.json`), Gitea
/// (`/swagger.v1.json`), swaggo (`/swagger/doc.json`), Kubernetes (`/openapi/v2`),
/// SonarQube (`/api/webservices/list`, `/api/v2/api-docs`), Vault
/// (`/v1/sys/internal/specs/openapi`), and the `.well-known` spellings.
pub const WELL_KNOWN: &[&str] = &[
    "/openapi.json",
    "/openapi.yaml",
    "/openapi.yml",
    "/swagger.json",
    "/swagger.yaml",
    "/v3/api-docs",
    "/v2/api-docs",
    "/api-docs",
    "/swagger/v1/swagger.json",
    "/api/swagger.json",
    "/api/openapi.json",
    "/api/v1/openapi.json",
    "/swagger.v1.json",
    "/swagger/doc.json",
    "/docs/openapi.json",
    "/openapi/v2",
    "/api/webservices/list",
    "/api/v2/api-docs",
    "/v1/sys/internal/specs/openapi",
    "/.well-known/openapi.json",
    "/.well-known/openapi.yaml",
];

/// One try: the URL (without query) and what came of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub url: String,
    /// `"found"`, or why not (`"HTTP 404"`, `"not an API description: ..."`, a refusal).
    pub outcome: String,
}

/// A description found: where, what it says, and what was tried before it.
#[derive(Debug, Clone)]
pub struct Discovered {
    pub url: Url,
    pub api: Api,
    pub tried: Vec<Attempt>,
}

/// No description found: every try, with why it failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no API description found ({} tried: {})", tried.len(), summary(tried))]
pub struct NotFound {
    pub tried: Vec<Attempt>,
}

fn summary(tried: &[Attempt]) -> String {
    tried
        .iter()
        .take(5)
        .map(|a| format!("{} → {}", a.url, a.outcome))
        .collect::<Vec<_>>()
        .join("; ")
        + if tried.len() > 5 { "; ..." } else { "" }
}

/// What to look for.
pub struct Request<'a> {
    pub base_url: &'a Url,
    pub openapi_url: Option<&'a Url>,
    /// Paths the operator hinted (`discovery_hints.custom_paths`).
    pub custom_paths: &'a [String],
    /// Paths hosts of the same kind answered before.
    pub learned_paths: &'a [String],
    /// Headers for every request (the credential, when the description is protected).
    pub headers: HeaderMap,
    /// Which of `headers` carry the credential (dropped on a redirect to another origin).
    pub credential_headers: Vec<HeaderName>,
    pub prefix: &'a str,
    pub limits: Limits,
}

/// The URLs to try, in order, without repeats.
pub fn candidates(request: &Request<'_>) -> Vec<Url> {
    let mut out: Vec<Url> = Vec::new();
    let mut push = |url: Option<Url>| {
        if let Some(url) = url
            && !out.contains(&url)
        {
            out.push(url);
        }
    };
    // Told where it is: only there. A description found elsewhere would be another one.
    if let Some(given) = request.openapi_url {
        return vec![given.clone()];
    }
    let base = with_trailing_slash(request.base_url);
    let origin = request.base_url.join("/").ok();
    let paths = request
        .custom_paths
        .iter()
        .map(String::as_str)
        .chain(request.learned_paths.iter().map(String::as_str))
        .chain(WELL_KNOWN.iter().copied());
    for path in paths {
        let relative = path.trim_start_matches('/');
        push(base.join(relative).ok());
        if let Some(origin) = &origin {
            push(origin.join(relative).ok());
        }
    }
    out
}

fn with_trailing_slash(url: &Url) -> Url {
    let mut url = url.clone();
    if !url.path().ends_with('/') {
        url.set_path(&format!("{}/", url.path()));
    }
    url.set_query(None);
    url
}

/// Tries each candidate until one is a description devmesh reads.
pub async fn discover(outbound: &Outbound, request: Request<'_>) -> Result<Discovered, NotFound> {
    discover_with(outbound, request, |_| {}).await
}

/// [`discover`], telling `tried` of each attempt as it ends (a job shows them while it
/// runs).
pub async fn discover_with(
    outbound: &Outbound,
    request: Request<'_>,
    mut tried_one: impl FnMut(&Attempt) + Send,
) -> Result<Discovered, NotFound> {
    // The credential goes to the API's own origin only: an `openapi_url` elsewhere (a
    // description published on another host) is asked without it.
    let credentialed = HttpSource {
        outbound,
        headers: request.headers.clone(),
        credential_headers: request.credential_headers.clone(),
    };
    let mut bare = request.headers.clone();
    for name in &request.credential_headers {
        bare.remove(name);
    }
    let anonymous = HttpSource {
        outbound,
        headers: bare,
        credential_headers: Vec::new(),
    };
    let home = request.base_url.origin();
    let mut tried = Vec::new();
    for url in candidates(&request) {
        let source = if url.origin() == home {
            &credentialed
        } else {
            &anonymous
        };
        // A refusal by the guard applies to every path of this host: stop at the first.
        let mut refused = false;
        let outcome = match DocumentSet::load(url.clone(), source, &request.limits).await {
            Ok(set) => convert(&set, request.prefix).map_err(|e| e.to_string()),
            Err(e) => {
                refused = matches!(e, DocumentError::Refused(..));
                Err(e.to_string())
            }
        };
        let shown = redacted(&url);
        match outcome {
            Ok(api) => {
                tried.push(Attempt {
                    url: shown,
                    outcome: "found".into(),
                });
                tried_one(tried.last().expect("just pushed"));
                return Ok(Discovered { url, api, tried });
            }
            Err(why) => {
                tried.push(Attempt {
                    url: shown,
                    outcome: crate::gateway::operations::cap(&why, 300),
                });
                tried_one(tried.last().expect("just pushed"));
                if refused {
                    break;
                }
            }
        }
    }
    Err(NotFound { tried })
}

/// Documents over HTTP through the outbound client; references followed to the same
/// origin only.
pub struct HttpSource<'a> {
    pub outbound: &'a Outbound,
    pub headers: HeaderMap,
    pub credential_headers: Vec<HeaderName>,
}

impl Source for HttpSource<'_> {
    fn load<'a>(
        &'a self,
        url: &'a Url,
        max_bytes: usize,
    ) -> futures_util::future::BoxFuture<'a, Result<Vec<u8>, LoadError>> {
        Box::pin(async move {
            let mut request = OutboundRequest::get(url.clone());
            request.headers = self.headers.clone();
            request.headers.insert(
                ACCEPT,
                HeaderValue::from_static(
                    "application/json, application/yaml;q=0.9, text/yaml;q=0.9, */*;q=0.5",
                ),
            );
            request.credential_headers = self.credential_headers.clone();
            let mut response = self.outbound.send(request).await.map_err(|e| match e {
                // This host refused (not a redirect's target: other paths may do).
                OutboundError::Refused(r) if Some(r.host.as_str()) == url.host_str() => {
                    LoadError::Refused(r.to_string())
                }
                e => LoadError::Failed(e.to_string()),
            })?;
            let status = response.status();
            if !status.is_success() {
                return Err(LoadError::Failed(format!("HTTP {}", status.as_u16())));
            }
            if response
                .content_length()
                .is_some_and(|n| n > max_bytes as u64)
            {
                return Err(LoadError::TooLarge(max_bytes));
            }
            let mut body = Vec::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| LoadError::Failed(format!("the answer broke off: {e}")))?
            {
                if body.len() + chunk.len() > max_bytes {
                    return Err(LoadError::TooLarge(max_bytes));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body)
        })
    }

    fn may_load(&self, from: &Url, to: &Url) -> bool {
        matches!(to.scheme(), "http" | "https") && from.origin() == to.origin()
    }
}
