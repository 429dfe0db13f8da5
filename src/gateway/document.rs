//! API description documents as devmesh reads them: bytes of JSON or YAML within set
//! limits, parsed into a JSON value, with every document they reference by `$ref`
//! loaded beside them ([`DocumentSet`]).
//!
//! Limits (all refusals are [`DocumentError`]s that say which limit, never a crash):
//! - a document is at most [`Limits::max_bytes`] (20 MiB: Kubernetes' whole description
//!   is 4 MiB) and nests at most 128 levels when parsed (serde_json's recursion limit;
//!   YAML is held to the same by serde-saphyr's budget);
//! - at most [`Limits::max_documents`] files make up one description;
//! - an external `$ref` is followed only to the same origin as the document that holds
//!   it (same scheme, host and port over HTTP; inside the root's directory for files):
//!   never to `file:` from HTTP, never to another host.

use std::collections::BTreeMap;

use serde_json::Value;
use url::Url;

/// Bounds on what one description may cost.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of one document.
    pub max_bytes: usize,
    /// Documents (the root and the files it references) of one description.
    pub max_documents: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 20 * 1024 * 1024,
            max_documents: 500,
        }
    }
}

/// Why a description cannot be read. Messages name the document and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("{0} is larger than the limit of {1} bytes")]
    TooLarge(String, usize),
    #[error("{0} is neither JSON nor YAML: {1}")]
    Unparsable(String, String),
    #[error("{0} is not an object at the top level")]
    NotAnObject(String),
    #[error("the description references more than {0} documents")]
    TooManyDocuments(usize),
    #[error("{0} cannot be loaded: {1}")]
    Unreachable(String, String),
    /// The SSRF guard refused the address: every document of that host would be refused.
    #[error("{0} cannot be loaded: {1}")]
    Refused(String, String),
}

/// Why a [`Source`] could not hand over a document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("larger than the limit of {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Failed(String),
    /// Refused before any request (the outbound client's SSRF guard).
    #[error("{0}")]
    Refused(String),
}

/// Parses one document: JSON when it looks like JSON, else YAML (a superset).
pub fn parse(name: &str, bytes: &[u8], limits: &Limits) -> Result<Value, DocumentError> {
    if bytes.len() > limits.max_bytes {
        return Err(DocumentError::TooLarge(name.into(), limits.max_bytes));
    }
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes)
        .map_err(|e| DocumentError::Unparsable(name.into(), format!("not UTF-8 ({e})")))?;
    let trimmed = text.trim_start();
    let value: Value = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        serde_json::from_str(text)
            .map_err(|e| DocumentError::Unparsable(name.into(), format!("JSON: {e}")))?
    } else {
        let options = serde_saphyr::options! {
            budget: serde_saphyr::budget! {
                max_depth: 128,
                max_nodes: 5_000_000,
            },
        };
        serde_saphyr::from_str_with_options(text, options).map_err(|e| {
            DocumentError::Unparsable(name.into(), format!("YAML: {}", first_line(&e.to_string())))
        })?
    };
    if !value.is_object() {
        return Err(DocumentError::NotAnObject(name.into()));
    }
    Ok(value)
}

fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(300)
        .collect()
}

/// Where documents come from: files under a directory, or HTTP through the outbound
/// client. The source decides which URLs it may load ([`Source::may_load`]).
pub trait Source: Send + Sync {
    /// The bytes of the document at `url`, within `max_bytes`.
    fn load<'a>(
        &'a self,
        url: &'a Url,
        max_bytes: usize,
    ) -> futures_util::future::BoxFuture<'a, Result<Vec<u8>, LoadError>>;

    /// Whether a `$ref` from `from` may lead to `to`.
    fn may_load(&self, from: &Url, to: &Url) -> bool;
}

/// Documents under one directory, read in place (tests, benchmarks, uploads with their
/// files): only `file:` URLs inside the directory.
pub struct Directory {
    root: std::path::PathBuf,
}

impl Directory {
    pub fn new(root: impl Into<std::path::PathBuf>) -> std::io::Result<Self> {
        Ok(Self {
            root: root.into().canonicalize()?,
        })
    }

    /// The `file:` URL of a path inside the directory.
    pub fn url(&self, relative: &str) -> Url {
        Url::from_file_path(self.root.join(relative)).expect("an absolute path")
    }

    fn inside(&self, url: &Url) -> Option<std::path::PathBuf> {
        let path = url.to_file_path().ok()?.canonicalize().ok()?;
        path.starts_with(&self.root).then_some(path)
    }
}

impl Source for Directory {
    fn load<'a>(
        &'a self,
        url: &'a Url,
        max_bytes: usize,
    ) -> futures_util::future::BoxFuture<'a, Result<Vec<u8>, LoadError>> {
        Box::pin(async move {
            let failed = |e: std::io::Error| LoadError::Failed(e.to_string());
            let path = self.inside(url).ok_or_else(|| {
                LoadError::Failed("it is not a file inside the description's directory".into())
            })?;
            let size = std::fs::metadata(&path).map_err(failed)?.len();
            if size > max_bytes as u64 {
                return Err(LoadError::TooLarge(max_bytes));
            }
            std::fs::read(&path).map_err(failed)
        })
    }

    fn may_load(&self, _from: &Url, to: &Url) -> bool {
        to.scheme() == "file" && self.inside(to).is_some()
    }
}

/// A description: its root document and every document it references, by URL (without
/// fragment). References that could not be followed are listed, not fatal: a
/// `$ref` to a Markdown page or a missing code sample must not lose the rest.
#[derive(Debug, Clone)]
pub struct DocumentSet {
    pub root: Url,
    pub documents: BTreeMap<String, Value>,
    /// `(reference, why)` for each external reference not followed.
    pub dangling: Vec<(String, String)>,
}

impl DocumentSet {
    /// A description of one document, with no external references followed.
    pub fn single(root: Url, document: Value) -> Self {
        let mut documents = BTreeMap::new();
        documents.insert(without_fragment(&root), document);
        Self {
            root,
            documents,
            dangling: Vec::new(),
        }
    }

    /// Loads `root` from `source` and every document its `$ref`s reach.
    pub async fn load(
        root: Url,
        source: &dyn Source,
        limits: &Limits,
    ) -> Result<Self, DocumentError> {
        let bytes = source
            .load(&root, limits.max_bytes)
            .await
            .map_err(|e| match e {
                LoadError::TooLarge(n) => DocumentError::TooLarge(display(&root), n),
                LoadError::Failed(why) => DocumentError::Unreachable(display(&root), why),
                LoadError::Refused(why) => DocumentError::Refused(display(&root), why),
            })?;
        let document = parse(&display(&root), &bytes, limits)?;
        let mut set = Self::single(root, document);
        set.follow(source, limits).await?;
        Ok(set)
    }

    /// Follows the external references of the documents held, breadth first.
    pub async fn follow(
        &mut self,
        source: &dyn Source,
        limits: &Limits,
    ) -> Result<(), DocumentError> {
        let mut queue: Vec<String> = self.documents.keys().cloned().collect();
        while let Some(at) = queue.pop() {
            let base = Url::parse(&at).expect("stored URLs parse");
            let mut refs = Vec::new();
            external_refs(&self.documents[&at], &mut refs);
            for reference in refs {
                let Ok(target) = base.join(&reference) else {
                    self.dangling
                        .push((reference, "not a valid reference".into()));
                    continue;
                };
                let key = without_fragment(&target);
                if self.documents.contains_key(&key) || self.dangling.iter().any(|(r, _)| *r == key)
                {
                    continue;
                }
                if !source.may_load(&base, &target) {
                    self.dangling
                        .push((key, "outside the description's origin".into()));
                    continue;
                }
                if self.documents.len() >= limits.max_documents {
                    return Err(DocumentError::TooManyDocuments(limits.max_documents));
                }
                let outcome = match source.load(&target, limits.max_bytes).await {
                    Ok(bytes) => {
                        parse(&display(&target), &bytes, limits).map_err(|e| e.to_string())
                    }
                    Err(e) => Err(e.to_string()),
                };
                match outcome {
                    Ok(document) => {
                        self.documents.insert(key.clone(), document);
                        queue.push(key);
                    }
                    Err(why) => self.dangling.push((key, why)),
                }
            }
        }
        Ok(())
    }

    pub fn root_document(&self) -> &Value {
        &self.documents[&without_fragment(&self.root)]
    }

    /// Resolves `reference` as written in the document at `base`: the value and the URL
    /// of the document holding it (for references inside it). `None` when it leads
    /// nowhere.
    pub fn resolve<'a>(&'a self, base: &str, reference: &str) -> Option<(&'a Value, String)> {
        let (doc_url, pointer) = match reference.strip_prefix('#') {
            Some(pointer) => (base.to_string(), pointer.to_string()),
            None => {
                let target = Url::parse(base).ok()?.join(reference).ok()?;
                let pointer = target.fragment().unwrap_or("").to_string();
                (without_fragment(&target), pointer)
            }
        };
        let document = self.documents.get(&doc_url)?;
        let pointer = percent_decode(&pointer);
        let value = if pointer.is_empty() {
            document
        } else {
            document.pointer(&pointer)?
        };
        Some((value, doc_url))
    }
}

/// The URL without its fragment, as documents are keyed.
pub fn without_fragment(url: &Url) -> String {
    let mut url = url.clone();
    url.set_fragment(None);
    url.to_string()
}

/// A document's name in messages: a file's name, or the URL without query.
fn display(url: &Url) -> String {
    if url.scheme() == "file" {
        return url
            .path_segments()
            .and_then(|mut s| s.next_back())
            .unwrap_or("the document")
            .to_string();
    }
    crate::outbound::redacted(url)
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The `$ref` values of `value` that point outside its document.
fn external_refs(value: &Value, out: &mut Vec<String>) {
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref")
                    && !r.starts_with('#')
                    && !out.contains(r)
                {
                    out.push(r.clone());
                }
                stack.extend(map.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
}
