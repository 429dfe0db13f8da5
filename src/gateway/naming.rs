//! Tool names: `<prefix>_<operation>`, portable (`^[a-zA-Z0-9_-]{1,64}$`, what MCP clients
//! and model APIs accept), unique within one description and the same on every
//! discovery of the same description.
//!
//! The operation part is the `operationId`, or the method and path when there is none
//! (`get_repos_owner_repo`). Other characters become `_`, runs of `_` collapse. A name
//! longer than 64 keeps its first 55 characters and ends in `_` and 8 hex digits of the
//! SHA-256 of the whole name, so that two long names stay apart. Two operations that
//! still collide (duplicate operationIds) are told apart by `_2`, `_3`, ... in the order
//! operations are read: paths sorted, then methods in OpenAPI's order (`get`, `put`,
//! `post`, `delete`, ...), so that the same description always gives the same names.

use std::collections::HashSet;

use sha2::{Digest, Sha256};

/// The longest tool name.
pub const MAX_LEN: usize = 64;

/// Whether `name` is a portable tool name.
pub fn is_portable(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `text` with every character outside `[a-zA-Z0-9_-]` made `_`, runs of `_` collapsed
/// and `_` trimmed from both ends.
pub fn slug(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '-' {
            c
        } else {
            '_'
        };
        if c == '_' && (out.is_empty() || out.ends_with('_')) {
            continue;
        }
        out.push(c);
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

/// The operation part of a name: its `operationId`, else method and path.
pub fn operation_part(operation_id: Option<&str>, method: &str, path: &str) -> String {
    let from_id = operation_id.map(slug).filter(|s| !s.is_empty());
    from_id.unwrap_or_else(|| {
        let s = slug(&format!("{} {}", method.to_lowercase(), path));
        if s.is_empty() {
            method.to_lowercase()
        } else {
            s
        }
    })
}

/// At most [`MAX_LEN`] characters, deterministically.
pub fn shorten(name: String) -> String {
    if name.len() <= MAX_LEN {
        return name;
    }
    let digest = Sha256::digest(name.as_bytes());
    let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let mut head: String = name.chars().take(MAX_LEN - 9).collect();
    while head.ends_with('_') {
        head.pop();
    }
    format!("{head}_{hash}")
}

/// Hands out unique names in the order asked.
#[derive(Default)]
pub struct Names {
    taken: HashSet<String>,
}

impl Names {
    /// The name of the next operation: `<prefix>_<part>`, shortened, made unique.
    pub fn next(&mut self, prefix: &str, part: &str) -> String {
        let base = shorten(format!("{prefix}_{part}"));
        if self.taken.insert(base.clone()) {
            return base;
        }
        (2..)
            .map(|n| {
                let suffix = format!("_{n}");
                let mut head = base.clone();
                while head.len() + suffix.len() > MAX_LEN {
                    head.pop();
                }
                head + &suffix
            })
            .find(|candidate| self.taken.insert(candidate.clone()))
            .expect("some suffix is free")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_portable_unique_and_stable() {
        assert_eq!(
            slug("ApiController.VerifyInvitation"),
            "ApiController_VerifyInvitation"
        );
        assert_eq!(
            operation_part(None, "GET", "/repos/{owner}/{repo}"),
            "get_repos_owner_repo"
        );
        assert_eq!(operation_part(Some("日本語"), "POST", "/x"), "post_x");
        let long = "a".repeat(200);
        let short = shorten(format!("tool_{long}"));
        assert_eq!(short.len(), MAX_LEN);
        assert!(is_portable(&short));
        assert_eq!(short, shorten(format!("tool_{long}")));
        assert_ne!(short, shorten(format!("tool_{long}b")));
        let mut names = Names::default();
        assert_eq!(names.next("t", "op"), "t_op");
        assert_eq!(names.next("t", "op"), "t_op_2");
        assert_eq!(names.next("t", "op"), "t_op_3");
        let mut names = Names::default();
        let a = names.next("t", &long);
        let b = names.next("t", &long);
        assert!(is_portable(&a) && is_portable(&b) && a != b);
    }
}
