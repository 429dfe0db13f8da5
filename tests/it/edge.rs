//! `devmesh edge`, the real binary over stdio: forwarding over both transports, errors
//! while the server is away, local tools, and the official Python SDK's stdio client
//! surviving a server restart.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::helpers::{Shape, TestEnv, closed_port};
use crate::mcp_interop::python;
use crate::rest::{self, register};

struct Edge {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    /// Notifications seen while waiting for answers.
    notices: Vec<Value>,
}

impl Edge {
    fn start(args: &[&str], key: &str) -> Self {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_devmesh"))
            .arg("edge")
            .args(args)
            .env("DEVMESH_API_KEY", key)
            .env("DEVMESH_EDGE_LOG", "debug")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the edge starts");
        Self {
            stdin: child.stdin.take().unwrap(),
            stdout: BufReader::new(child.stdout.take().unwrap()).lines(),
            _child: child,
            notices: Vec::new(),
        }
    }

    async fn send(&mut self, message: &Value) {
        let mut line = message.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.unwrap();
    }

    /// The next line on stdout: every one must be a JSON-RPC message.
    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(20), self.stdout.next_line())
            .await
            .expect("the edge answers in time")
            .unwrap()
            .expect("stdout stays open");
        let message: Value = serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("stdout carries only JSON-RPC: {line}"));
        assert_eq!(message["jsonrpc"], "2.0", "{message}");
        message
    }

    async fn call(&mut self, id: i64, method: &str, params: Value) -> Value {
        self.send(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }))
            .await;
        loop {
            let message = self.next().await;
            if message["id"] == json!(id) && message.get("method").is_none() {
                return message;
            }
            self.notices.push(message);
        }
    }

    async fn initialize(&mut self) -> Value {
        let init = self
            .call(
                0,
                "initialize",
                json!({ "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "edge-test", "version": "1" } }),
            )
            .await;
        self.send(&json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
            .await;
        init
    }

    async fn tool(&mut self, id: i64, name: &str, arguments: Value) -> Value {
        let answer = self
            .call(
                id,
                "tools/call",
                json!({ "name": name, "arguments": arguments }),
            )
            .await;
        answer["result"].clone()
    }

    /// Waits for a notification with this method.
    async fn notice(&mut self, method: &str) -> Value {
        if let Some(i) = self.notices.iter().position(|m| m["method"] == method) {
            return self.notices.remove(i);
        }
        loop {
            let message = self.next().await;
            if message["method"] == method {
                return message;
            }
            self.notices.push(message);
        }
    }
}

/// Through both transports: the local session is negotiated by the edge, the server's
/// tools and resources pass through, and a subscribed resource's change is told.
async fn edge_forwards_over_both_transports(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let tenant = register(&app, "acme").await;
    let url = format!("http://{}", app.mcp);
    for transport in ["http", "ws"] {
        let mut edge = Edge::start(&["--url", &url, "--transport", transport], &tenant.key);
        let init = edge.initialize().await;
        assert_eq!(
            init["result"]["protocolVersion"], "2025-06-18",
            "{transport}"
        );
        assert_eq!(init["result"]["serverInfo"]["name"], "devmesh-edge");

        let tools = edge.call(1, "tools/list", json!({})).await;
        let names: Vec<&str> = tools["result"]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("{transport}: {tools}"))
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"devmesh_context_create"),
            "{transport}: {names:?}"
        );
        assert!(
            !names.contains(&"edge_run_command"),
            "no local tool unless allowed"
        );
        assert!(
            tools["result"].get("resultType").is_none(),
            "a 2025 client sees 2025 results"
        );

        let whoami = edge.tool(2, "devmesh_whoami", json!({})).await;
        assert_eq!(
            whoami["structuredContent"]["organization_id"],
            tenant.org_id.as_str()
        );
        let created = edge
            .tool(
                3,
                "devmesh_context_create",
                json!({ "name": format!("via {transport}") }),
            )
            .await;
        let id = created["structuredContent"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let uri = format!("devmesh://contexts/{id}");
        let sub = edge
            .call(4, "resources/subscribe", json!({ "uri": uri }))
            .await;
        assert_eq!(sub["result"], json!({}));
        // The listen stream is reopened with the subscription; give it a moment.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = rest::call(
            &app,
            "POST",
            &format!("/api/v1/contexts/{id}/items"),
            Some(&tenant.key),
            Some(&json!({ "items": [{ "role": "user", "content": "from REST" }] })),
        )
        .await;
        assert_eq!(r.status, 201);
        let updated = edge.notice("notifications/resources/updated").await;
        assert_eq!(updated["params"]["uri"], uri.as_str(), "{transport}");
        assert!(
            updated["params"].get("_meta").is_none(),
            "the subscription tag is the edge's"
        );
        // A URI no header holds plainly travels encoded: both transports give the same
        // answer (not found, here).
        let odd = edge
            .call(
                50,
                "resources/read",
                json!({ "uri": "devmesh://contexts/Załączniki 報告" }),
            )
            .await;
        assert!(
            odd["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("not found"),
            "{transport}: {odd}"
        );
        let read = edge.call(5, "resources/read", json!({ "uri": uri })).await;
        assert!(
            read["result"]["contents"][0]["text"]
                .as_str()
                .unwrap()
                .contains("from REST")
        );

        // Progress passes through, before the result.
        let answer = edge
            .call(
                6,
                "tools/call",
                json!({ "name": "devmesh_whoami", "arguments": {}, "_meta": { "progressToken": "t" } }),
            )
            .await;
        assert!(answer["result"]["structuredContent"].is_object());
        // Server errors keep their code.
        let missing = edge
            .call(7, "prompts/get", json!({ "name": "no_such_prompt" }))
            .await;
        assert!(missing["error"]["code"].is_i64(), "{missing}");
        // A 2026-07-28 client goes straight through.
        edge.send(
            &json!({ "jsonrpc": "2.0", "id": 8, "method": "tools/list", "params": { "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}
        } } }),
        )
        .await;
        let modern = loop {
            let m = edge.next().await;
            if m["id"] == 8 {
                break m;
            }
        };
        assert_eq!(modern["result"]["resultType"], "complete", "{modern}");
    }

    // With a local command allowed, its tool is listed after the server's, and runs.
    let workdir = env.dir.path().to_string_lossy().to_string();
    let mut edge = Edge::start(
        &[
            "--url",
            &url,
            "--allow-command",
            "echo",
            "--workdir",
            &workdir,
        ],
        &tenant.key,
    );
    edge.initialize().await;
    let tools = edge.call(1, "tools/list", json!({})).await;
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"devmesh_whoami"), "{names:?}");
    assert_eq!(names.last(), Some(&"edge_run_command"), "{names:?}");
    let echoed = edge
        .tool(
            2,
            "edge_run_command",
            json!({ "command": "echo", "args": ["hi"] }),
        )
        .await;
    assert_eq!(echoed["structuredContent"]["stdout"], "hi\n", "{echoed}");
}

/// While the server cannot be reached, requests get a clear JSON-RPC error, and the edge
/// keeps running.
async fn edge_answers_clearly_while_the_server_is_away(_shape: Shape) {
    let url = format!("http://127.0.0.1:{}", closed_port());
    for transport in ["http", "ws"] {
        let mut edge = Edge::start(&["--url", &url, "--transport", transport], "dm_test_key");
        let init = edge.initialize().await;
        assert_eq!(init["result"]["protocolVersion"], "2025-06-18");
        assert_eq!(edge.call(1, "ping", json!({})).await["result"], json!({}));
        let answer = edge.call(2, "tools/list", json!({})).await;
        assert_eq!(
            answer["error"]["code"],
            devmesh::edge::UNREACHABLE,
            "{transport}: {answer}"
        );
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("unreachable") && message.contains(&url),
            "{message}"
        );
        assert!(!message.contains("dm_test_key"), "the key is never shown");
        let again = edge.call(3, "tools/list", json!({})).await;
        assert_eq!(again["error"]["code"], devmesh::edge::UNREACHABLE);
    }
}

/// Local tools: only allowed executables, no shell, a working directory that cannot be
/// left, a timeout that kills the process group, an output cap, no credentials.
async fn local_commands_run_only_as_allowed(_shape: Shape) {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(work.join("sub")).unwrap();
    std::os::unix::fs::symlink("/", work.join("root-link")).unwrap();
    let url = format!("http://127.0.0.1:{}", closed_port());
    let workdir = work.to_string_lossy().to_string();
    let mut edge = Edge::start(
        &[
            "--url",
            &url,
            "--allow-command",
            "echo",
            "--allow-command",
            "sh",
            "--allow-command",
            "env",
            "--allow-command",
            "pwd",
            "--workdir",
            &workdir,
            "--command-timeout",
            "1s",
            "--max-output-bytes",
            "4096",
        ],
        "dm_secret_edge_key",
    );
    edge.initialize().await;
    let run = |command: &str, args: Value, cwd: Option<&str>| {
        let mut a = json!({ "command": command, "args": args });
        if let Some(cwd) = cwd {
            a["cwd"] = json!(cwd);
        }
        a
    };

    // Allowed, and arguments are data, not shell.
    let echoed = edge
        .tool(
            1,
            "edge_run_command",
            run(
                "echo",
                json!(["; touch pwned", "$(touch pwned2)", "a b"]),
                None,
            ),
        )
        .await;
    assert_eq!(echoed["isError"], false, "{echoed}");
    assert_eq!(
        echoed["structuredContent"]["stdout"],
        "; touch pwned $(touch pwned2) a b\n"
    );
    assert_eq!(echoed["structuredContent"]["exit_code"], 0);
    assert!(!work.join("pwned").exists() && !work.join("pwned2").exists());

    // Not allowed: refused, and nothing runs.
    let refused = edge
        .tool(
            2,
            "edge_run_command",
            run("touch", json!(["created-by-touch"]), None),
        )
        .await;
    assert_eq!(refused["isError"], true);
    let why = refused["content"][0]["text"].as_str().unwrap();
    assert!(
        why.contains("\"touch\" is not allowed") && why.contains("echo"),
        "{why}"
    );
    assert!(!work.join("created-by-touch").exists());

    // The working directory: inside is fine, outside is refused, links included.
    let inside = edge
        .tool(3, "edge_run_command", run("pwd", json!([]), Some("sub")))
        .await;
    assert_eq!(
        inside["structuredContent"]["stdout"]
            .as_str()
            .unwrap()
            .trim(),
        work.join("sub").canonicalize().unwrap().to_string_lossy()
    );
    for (id, cwd) in [(4, ".."), (5, "root-link"), (6, "sub/../..")] {
        let out = edge
            .tool(id, "edge_run_command", run("pwd", json!([]), Some(cwd)))
            .await;
        assert_eq!(out["isError"], true, "{cwd}");
        assert!(
            out["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains("not inside the working directory"),
            "{out}"
        );
    }
    for (id, arg) in [
        (7, "../outside.txt"),
        (8, "/etc/passwd"),
        (9, "sub/../../x"),
    ] {
        let out = edge
            .tool(id, "edge_run_command", run("echo", json!([arg]), None))
            .await;
        assert_eq!(out["isError"], true, "{arg}");
        assert!(
            out["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains("outside the working directory"),
            "{out}"
        );
    }

    // The timeout kills the command and what it started.
    let started = std::time::Instant::now();
    let slow = edge
        .tool(
            10,
            "edge_run_command",
            run(
                "sh",
                json!(["-c", "sleep 30 & echo $! > bg.pid; sleep 30"]),
                None,
            ),
        )
        .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(slow["structuredContent"]["timed_out"], true, "{slow}");
    assert_eq!(slow["isError"], true);
    let bg: i32 = std::fs::read_to_string(work.join("bg.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    crate::helpers::wait_until(Duration::from_secs(5), || async move {
        // Gone, or a zombie waiting for its (also killed) parent's reaper.
        std::fs::read_to_string(format!("/proc/{bg}/stat"))
            .map(|s| s.split_whitespace().nth(2) == Some("Z"))
            .unwrap_or(true)
    })
    .await
    .expect("the background child is killed with its group");

    // Output is capped.
    let loud = edge
        .tool(
            11,
            "edge_run_command",
            run(
                "sh",
                json!(["-c", "while :; do echo xxxxxxxxxxxxxxxxxxxxxxxx; done"]),
                None,
            ),
        )
        .await;
    assert_eq!(loud["structuredContent"]["truncated"], true, "{loud}");
    assert_eq!(
        loud["structuredContent"]["stdout"].as_str().unwrap().len(),
        4096
    );

    // The environment has none of the edge's credentials.
    let envs = edge
        .tool(12, "edge_run_command", run("env", json!([]), None))
        .await;
    let listed = envs["structuredContent"]["stdout"].as_str().unwrap();
    assert!(!listed.is_empty());
    assert!(
        !listed.contains("dm_secret_edge_key") && !listed.contains("DEVMESH_"),
        "{listed}"
    );

    // Arguments of the wrong shape are a tool error, not a crash.
    let bad_args = edge
        .tool(
            13,
            "edge_run_command",
            json!({ "command": "echo", "args": "not a list" }),
        )
        .await;
    assert_eq!(bad_args["isError"], true);
}

/// The official Python SDK's `stdio_client` drives the edge, and the server restarts in
/// the middle of the session.
async fn python_stdio_client_survives_a_server_restart(_shape: Shape) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/edge_stdio.py");
    for transport in ["http", "ws"] {
        let output = tokio::time::timeout(
            Duration::from_secs(180),
            tokio::process::Command::new(python())
                .arg(script)
                .arg(env!("CARGO_BIN_EXE_devmesh"))
                .arg(transport)
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("the SDK finishes")
        .expect("python runs");
        assert!(
            output.status.success(),
            "{transport}: the SDK failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let seen: Value = serde_json::from_slice(&output.stdout).expect("the SDK prints JSON");
        assert_eq!(seen["server_name"], "devmesh-edge", "{seen}");
        let org = &seen["registered_organization_id"];
        assert_eq!(&seen["organization_id"], org);
        assert_eq!(
            &seen["after_organization_id"], org,
            "the same key works after the restart"
        );
        let tools = seen["tools"].as_array().unwrap();
        assert!(tools.contains(&json!("devmesh_context_append")), "{seen}");
        assert!(
            seen["resource_before"]
                .as_str()
                .unwrap()
                .contains("before restart")
        );
        let after = seen["resource_after"].as_str().unwrap();
        assert!(
            after.contains("before restart") && after.contains("after restart"),
            "{after}"
        );
        assert_eq!(
            seen["down_error"]["code"],
            devmesh::edge::UNREACHABLE,
            "{seen}"
        );
        assert!(
            seen["down_error"]["message"]
                .as_str()
                .unwrap()
                .contains("unreachable")
        );
        assert!(
            seen["notices"]
                .as_array()
                .unwrap()
                .contains(&json!("notifications/tools/list_changed")),
            "{seen}"
        );
    }
}

/// A server with the conformance fixtures on SQLite: its environment and node (kept
/// alive by the caller), its URL, and a tenant's key.
async fn fixtures_server() -> (TestEnv, crate::helpers::TestApp, String, String) {
    let mut env = TestEnv::new(Shape::Sqlite).await;
    env.config.mcp.conformance_fixtures = true;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let tenant = register(&app, "acme").await;
    let url = format!("http://{}", app.mcp);
    (env, app, url, tenant.key)
}

/// A tool that asks for an argument in an `Mcp-Param-*` header gets it from the edge,
/// encoded, over Streamable HTTP.
#[tokio::test]
async fn edge_sends_the_headers_a_tool_asks_for() {
    let (_env, _app, url, key) = fixtures_server().await;
    let mut edge = Edge::start(&["--url", &url, "--transport", "http"], &key);
    edge.initialize().await;
    edge.call(1, "tools/list", json!({})).await;
    let answer = edge
        .call(
            2,
            "tools/call",
            json!({ "name": "test_custom_header", "arguments": { "region": "Zürich 北" } }),
        )
        .await;
    assert_eq!(
        answer["result"]["content"][0]["text"], "region: Zürich 北",
        "{answer}"
    );
    // Called before any tools/list went through the edge: it learns the tool then.
    let mut fresh = Edge::start(&["--url", &url, "--transport", "http"], &key);
    fresh.initialize().await;
    let answer = fresh
        .call(
            1,
            "tools/call",
            json!({ "name": "test_custom_header", "arguments": { "region": "Łódź" } }),
        )
        .await;
    assert_eq!(
        answer["result"]["content"][0]["text"], "region: Łódź",
        "{answer}"
    );
}

/// A session client that declares the tasks extension follows a task through the edge,
/// over either transport; one that does not gets the tool's answer inline.
#[tokio::test]
async fn edge_relays_tasks() {
    let (_env, _app, url, key) = fixtures_server().await;
    for transport in ["http", "ws"] {
        let mut edge = Edge::start(&["--url", &url, "--transport", transport], &key);
        let init = edge
            .call(
                0,
                "initialize",
                json!({
                    "protocolVersion": "2025-11-25",
                    "capabilities": { "extensions": { "io.modelcontextprotocol/tasks": {} } },
                    "clientInfo": { "name": "edge-test", "version": "1" }
                }),
            )
            .await;
        assert!(
            init["result"]["capabilities"]["extensions"]["io.modelcontextprotocol/tasks"]
                .is_object()
        );
        let created = edge
            .tool(
                1,
                "slow_compute",
                json!({ "seconds": 0.3, "label": transport }),
            )
            .await;
        assert_eq!(created["resultType"], "task", "{transport}: {created}");
        let task = created["taskId"].as_str().unwrap().to_string();
        assert!(created["ttlMs"].as_u64().is_some(), "{created}");
        let mut id = 2;
        let done = loop {
            let got = edge.call(id, "tasks/get", json!({ "taskId": task })).await;
            id += 1;
            assert!(got["result"]["ttlMs"].as_u64().is_some(), "{got}");
            if got["result"]["status"] == "completed" {
                break got["result"].clone();
            }
            assert_eq!(got["result"]["status"], "working", "{got}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(
            done["result"]["content"][0]["text"],
            format!("Computed {transport} in 0.3 s")
        );

        let mut plain = Edge::start(&["--url", &url, "--transport", transport], &key);
        plain.initialize().await;
        let inline = plain
            .tool(
                1,
                "slow_compute",
                json!({ "seconds": 0.1, "label": "inline" }),
            )
            .await;
        assert_eq!(
            inline["content"][0]["text"], "Computed inline in 0.1 s",
            "{inline}"
        );
    }
}

for_shapes!([
    edge_forwards_over_both_transports,
    edge_answers_clearly_while_the_server_is_away,
    local_commands_run_only_as_allowed,
    python_stdio_client_survives_a_server_restart,
] on sqlite => Sqlite);
