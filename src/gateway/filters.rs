//! `include_operations` / `exclude_operations`: globs (the `globset` crate: `*` any run,
//! `?` one character, `[ab]` a class, `{a,b}` alternatives; case-insensitive) matched
//! against an operation's operationId, its `METHOD /path` and its tool name.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use super::operations::Operation;

/// Globs a list may hold, and the longest glob.
pub const MAX_GLOBS: usize = 100;
pub const MAX_GLOB_CHARS: usize = 256;

/// Which operations become tools.
#[derive(Debug, Clone)]
pub struct Filters {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

fn compile(field: &str, globs: &[String]) -> Result<Option<GlobSet>, String> {
    if globs.is_empty() {
        return Ok(None);
    }
    if globs.len() > MAX_GLOBS {
        return Err(format!(
            "{field} has {} globs; at most {MAX_GLOBS}",
            globs.len()
        ));
    }
    let mut set = GlobSetBuilder::new();
    for (i, glob) in globs.iter().enumerate() {
        if glob.trim().is_empty() || glob.chars().count() > MAX_GLOB_CHARS {
            return Err(format!(
                "{field}[{i}] must be 1 to {MAX_GLOB_CHARS} characters"
            ));
        }
        let compiled = GlobBuilder::new(glob.trim())
            .case_insensitive(true)
            .literal_separator(false)
            .build()
            .map_err(|e| format!("{field}[{i}] is not a glob: {e}"))?;
        set.add(compiled);
    }
    set.build()
        .map(Some)
        .map_err(|e| format!("{field} cannot be compiled: {e}"))
}

impl Filters {
    /// Errors name the field and the glob that is wrong.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, String> {
        Ok(Self {
            include: compile("include_operations", include)?,
            exclude: compile("exclude_operations", exclude)?,
        })
    }

    pub fn admits(&self, op: &Operation) -> bool {
        let route = format!("{} {}", op.method, op.path);
        let names = [
            op.operation_id.as_deref(),
            Some(route.as_str()),
            Some(&op.name),
        ];
        let matches = |set: &GlobSet| names.iter().flatten().any(|n| set.is_match(n));
        self.include.as_ref().is_none_or(matches) && !self.exclude.as_ref().is_some_and(matches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(id: Option<&str>, method: &str, path: &str) -> Operation {
        Operation {
            name: "t_x".into(),
            operation_id: id.map(str::to_string),
            method: method.into(),
            path: path.into(),
            description: String::new(),
            tags: vec![],
            deprecated: false,
            parameters: vec![],
            body: None,
            input_schema: serde_json::json!({"type": "object"}),
            hints: super::super::operations::Hints {
                read_only: true,
                destructive: false,
                idempotent: false,
            },
            cuts: vec![],
        }
    }

    #[test]
    fn include_then_exclude_by_id_or_route() {
        let f = Filters::new(
            &["repos/*".into(), "GET /users/*".into()],
            &["*delete*".into()],
        )
        .unwrap();
        assert!(f.admits(&op(Some("repos/get"), "GET", "/repos/{o}/{r}")));
        assert!(!f.admits(&op(Some("repos/delete"), "DELETE", "/repos/{o}/{r}")));
        assert!(f.admits(&op(None, "GET", "/users/{u}")));
        assert!(f.admits(&op(None, "get", "/Users/{u}")), "case-insensitive");
        assert!(!f.admits(&op(Some("orgs/get"), "GET", "/orgs/{o}")));
        assert!(
            Filters::new(&[], &[])
                .unwrap()
                .admits(&op(None, "POST", "/x"))
        );
        let e = Filters::new(&["a[".into()], &[]).unwrap_err();
        assert!(e.contains("include_operations[0]"), "{e}");
    }
}
