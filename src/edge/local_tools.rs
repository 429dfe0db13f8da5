//! The edge's local tool: runs one of the executables allowed with `--allow-command`,
//! without a shell, with its arguments as a list, in a working directory it cannot leave,
//! with a timeout that kills its whole process group, an output cap, and an environment
//! without the edge's own credentials. It is not a sandbox: an allowed program can do
//! what the user running the edge can.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncReadExt};

pub const TOOL_NAME: &str = "edge_run_command";

pub struct LocalTools {
    /// Allowed names, and the executable each was resolved to at start.
    commands: BTreeMap<String, PathBuf>,
    workdir: PathBuf,
    timeout: Duration,
    max_output: usize,
    /// Values that must not reach a command's environment (the API key).
    secrets: Vec<String>,
}

/// What a run produced.
#[derive(Debug, Default)]
struct Output {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    truncated: bool,
}

impl LocalTools {
    /// Resolves each allowed name on `PATH` (or as a path) once, now.
    pub fn new(
        names: &[String],
        workdir: &Path,
        timeout: Duration,
        max_output: usize,
        secrets: Vec<String>,
    ) -> Result<Self, String> {
        let workdir = workdir.canonicalize().map_err(|e| {
            format!(
                "the working directory {} is unusable: {e}",
                workdir.display()
            )
        })?;
        let mut commands = BTreeMap::new();
        for name in names {
            let path = resolve(name)
                .ok_or_else(|| format!("--allow-command {name}: no such executable on PATH"))?;
            let key = Path::new(name)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| name.clone());
            commands.insert(key, path);
        }
        Ok(Self {
            commands,
            workdir,
            timeout,
            max_output,
            secrets,
        })
    }

    /// The tool as `tools/list` shows it.
    pub fn spec(&self) -> Value {
        let names: Vec<&String> = self.commands.keys().collect();
        json!({
            "name": TOOL_NAME,
            "title": "Run a local command",
            "description": format!(
                "Runs one of the local commands this edge allows ({}) on the developer's machine, \
                 without a shell: arguments are passed as a list, exactly as given. Runs in {} \
                 (or a directory inside it), for at most {} s.",
                names.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", "),
                self.workdir.display(),
                self.timeout.as_secs_f64()
            ),
            "inputSchema": {
                "type": "object",
                "properties": {
                    "command": { "type": "string", "enum": names, "description": "An allowed command" },
                    "args": { "type": "array", "items": { "type": "string" }, "description": "Arguments, one per item" },
                    "cwd": { "type": "string", "description": "A directory inside the working directory, relative to it" }
                },
                "required": ["command"],
                "additionalProperties": false
            }
        })
    }

    /// Runs a `tools/call` of the local tool; refusals and failures are tool errors that
    /// say why.
    pub async fn call(&self, arguments: &Map<String, Value>) -> Value {
        match self.prepare(arguments) {
            Err(why) => refusal(&why),
            Ok((name, path, args, cwd)) => self.run(&name, &path, &args, &cwd).await,
        }
    }

    fn prepare(
        &self,
        arguments: &Map<String, Value>,
    ) -> Result<(String, PathBuf, Vec<String>, PathBuf), String> {
        if let Some(unknown) = arguments
            .keys()
            .find(|k| !["command", "args", "cwd"].contains(&k.as_str()))
        {
            return Err(format!(
                "unknown argument {unknown:?}: use command, args and cwd"
            ));
        }
        let name = arguments
            .get("command")
            .and_then(Value::as_str)
            .ok_or("\"command\" is required: one of the allowed commands")?;
        let Some(path) = self.commands.get(name) else {
            let allowed: Vec<&str> = self.commands.keys().map(String::as_str).collect();
            return Err(format!(
                "command {name:?} is not allowed: this edge runs only {} (--allow-command)",
                allowed.join(", ")
            ));
        };
        let args = match arguments.get("args") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|a| a.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or("\"args\" must be a list of strings")?,
            Some(_) => return Err("\"args\" must be a list of strings".into()),
        };
        let cwd = match arguments.get("cwd").and_then(Value::as_str) {
            None | Some("") => self.workdir.clone(),
            Some(dir) => self.inside(dir).ok_or_else(|| {
                format!(
                    "the directory {dir:?} is not inside the working directory {}",
                    self.workdir.display()
                )
            })?,
        };
        for arg in &args {
            if arg.contains('\0') {
                return Err("an argument contains a NUL byte".into());
            }
            if self.escapes(&cwd, arg) {
                return Err(format!(
                    "the argument {arg:?} names a path outside the working directory {}",
                    self.workdir.display()
                ));
            }
        }
        Ok((name.to_string(), path.clone(), args, cwd))
    }

    /// `dir` resolved inside the working directory (symbolic links followed), if it is.
    fn inside(&self, dir: &str) -> Option<PathBuf> {
        let resolved = self.workdir.join(dir).canonicalize().ok()?;
        (resolved.starts_with(&self.workdir) && resolved.is_dir()).then_some(resolved)
    }

    /// Whether an argument that looks like a path leads out of the working directory:
    /// an absolute path elsewhere, or `..` climbing above it.
    fn escapes(&self, cwd: &Path, arg: &str) -> bool {
        let path = Path::new(arg);
        let looks_like_path =
            path.is_absolute() || path.components().any(|c| c == Component::ParentDir);
        if !looks_like_path {
            return false;
        }
        let joined = cwd.join(path);
        // The deepest part that exists, resolved; the rest must not climb.
        let mut normal = PathBuf::new();
        for c in joined.components() {
            match c {
                Component::ParentDir => {
                    if !normal.pop() {
                        return true;
                    }
                }
                Component::CurDir => {}
                other => normal.push(other),
            }
        }
        let mut existing = normal.as_path();
        while !existing.exists() {
            match existing.parent() {
                Some(p) => existing = p,
                None => return true,
            }
        }
        match existing.canonicalize() {
            Ok(real) => !real.starts_with(&self.workdir),
            Err(_) => true,
        }
    }

    /// The edge's environment without its credentials.
    fn environment(&self) -> Vec<(String, String)> {
        std::env::vars()
            .filter(|(k, v)| {
                !k.starts_with("DEVMESH_")
                    && !self
                        .secrets
                        .iter()
                        .any(|s| !s.is_empty() && v.contains(s.as_str()))
            })
            .collect()
    }

    async fn run(&self, name: &str, path: &Path, args: &[String], cwd: &Path) -> Value {
        let mut command = tokio::process::Command::new(path);
        command
            .args(args)
            .current_dir(cwd)
            .env_clear()
            .envs(self.environment())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => return refusal(&format!("{name} could not start: {e}")),
        };
        let group = child.id().map(|pid| pid as i32);
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let cap = self.max_output;
        let work = async {
            let (out, err) = tokio::join!(read_capped(stdout, cap), read_capped(stderr, cap));
            let status = child.wait().await;
            (out, err, status)
        };
        let outcome = tokio::time::timeout(self.timeout, work).await;
        // Whatever it left behind goes with it, timed out or not.
        if let Some(group) = group {
            kill_group(group);
        }
        let (output, exit_code, timed_out) = match outcome {
            Ok(((out, out_cut), (err, err_cut), status)) => (
                Output {
                    stdout: out,
                    stderr: err,
                    truncated: out_cut || err_cut,
                },
                status.ok().and_then(|s| s.code()),
                false,
            ),
            Err(_) => (Output::default(), None, true),
        };
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let summary = if timed_out {
            format!(
                "{name} was stopped after {} s (the timeout); its process group was killed",
                self.timeout.as_secs_f64()
            )
        } else {
            match exit_code {
                Some(code) => format!("{name} exited with {code}"),
                None => format!("{name} was ended by a signal"),
            }
        };
        let mut text = summary.clone();
        if output.truncated {
            text.push_str(&format!(
                " (output cut at {} bytes; the command was stopped)",
                self.max_output
            ));
        }
        if !stdout.is_empty() {
            text.push_str(&format!("\n--- stdout ---\n{stdout}"));
        }
        if !stderr.is_empty() {
            text.push_str(&format!("\n--- stderr ---\n{stderr}"));
        }
        json!({
            "content": [{ "type": "text", "text": text }],
            "structuredContent": {
                "command": name,
                "args": args,
                "exit_code": exit_code,
                "timed_out": timed_out,
                "truncated": output.truncated,
                "stdout": stdout,
                "stderr": stderr,
            },
            "isError": timed_out || exit_code != Some(0),
        })
    }
}

fn refusal(why: &str) -> Value {
    json!({ "content": [{ "type": "text", "text": why }], "isError": true })
}

/// Reads up to `cap` bytes; past that, stops reading (the command is then stopped) and
/// says the output was cut.
async fn read_capped(mut reader: impl AsyncRead + Unpin, cap: usize) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return (out, false),
            Ok(n) => {
                if out.len() + n > cap {
                    out.extend_from_slice(&chunk[..cap - out.len()]);
                    return (out, true);
                }
                out.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

fn kill_group(group: i32) {
    // SAFETY: kill(2) with a negative pid signals the process group; no memory is shared.
    unsafe {
        libc::kill(-group, libc::SIGKILL);
    }
}

/// An allowed name as an executable: a path as given, else the first on `PATH`.
fn resolve(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return executable(&p).then(|| p.canonicalize().ok()).flatten();
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| executable(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools(dir: &Path) -> LocalTools {
        LocalTools::new(
            &["echo".into()],
            dir,
            Duration::from_secs(5),
            1024,
            vec!["secret-key".into()],
        )
        .unwrap()
    }

    #[test]
    fn paths_that_leave_the_working_directory_are_caught() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let t = tools(dir.path());
        let root = t.workdir.clone();
        assert!(!t.escapes(&root, "file.txt"));
        assert!(!t.escapes(&root, "sub/../file.txt"));
        assert!(t.escapes(&root, "../outside"));
        assert!(t.escapes(&root, "sub/../../outside"));
        assert!(t.escapes(&root, "/etc/passwd"));
        assert!(!t.escapes(&root, &root.join("sub").to_string_lossy()));
        assert!(t.inside("sub").is_some());
        assert!(t.inside("..").is_none());
        assert!(t.inside("missing").is_none());
    }

    #[test]
    fn unknown_commands_are_refused_with_the_allowed_list() {
        let dir = tempfile::tempdir().unwrap();
        let t = tools(dir.path());
        let args = json!({ "command": "rm", "args": ["-rf", "/"] });
        let err = t.prepare(args.as_object().unwrap()).unwrap_err();
        assert!(err.contains("not allowed") && err.contains("echo"), "{err}");
    }
}
