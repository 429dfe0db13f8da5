//! The command line: help, version, configuration layering and validation, migrations,
//! completions and the dead-letter commands, run as the real binary.

use std::path::Path;
use std::process::{Command, Output};

use devmesh::bus::queue::NewJob;
use serde_json::json;

use crate::helpers::{Shape, TestEnv};

fn devmesh(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_devmesh"));
    cmd.current_dir(dir)
        .env_clear()
        .env("DEVMESH_LOG__LEVEL", "warn")
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("devmesh runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn help_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let out = devmesh(dir.path(), &[], &["--version"]);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out).trim(),
        format!("devmesh {}", env!("CARGO_PKG_VERSION"))
    );
    let help = stdout(&devmesh(dir.path(), &[], &["--help"]));
    for word in [
        "serve",
        "worker",
        "migrate",
        "config",
        "completions",
        "--config",
        "--data-dir",
        "DEVMESH_SECTION__KEY",
    ] {
        assert!(help.contains(word), "help mentions {word}:\n{help}");
    }
    let serve_help = stdout(&devmesh(dir.path(), &[], &["serve", "--help"]));
    assert!(serve_help.contains("--roles") && serve_help.contains("api, mcp, worker, indexer"));
    let out = devmesh(dir.path(), &[], &["completions", "bash"]);
    assert!(out.status.success() && stdout(&out).contains("_devmesh()"));
}

#[test]
fn config_show_names_each_source_and_masks_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("devmesh.toml"),
        "[api]\nlisten = \"127.0.0.1:9100\"\n[database]\nurl = \"postgres://devmesh:hunter2@db:5432/devmesh\"\nmax_connections = 40\n",
    )
    .unwrap();
    let out = devmesh(
        dir.path(),
        &[
            ("DEVMESH_MCP__LISTEN", "0.0.0.0:9000"),
            ("DEVMESH_DATABASE__MAX_CONNECTIONS", "30"),
            ("DEVMESH_API_KEY", "not-config"),
        ],
        &["--data-dir", "/var/lib/devmesh", "config", "show"],
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        text.contains("# configuration file: devmesh.toml"),
        "{text}"
    );
    assert!(
        text.contains(r#"data_dir = "/var/lib/devmesh"  # command-line flag"#),
        "{text}"
    );
    assert!(
        text.contains(r#"listen = "0.0.0.0:9000"  # `DEVMESH_` environment variable"#),
        "{text}"
    );
    assert!(
        text.contains(r#"listen = "127.0.0.1:9100"  # TOML file"#),
        "{text}"
    );
    assert!(
        text.contains("max_connections = 30  # `DEVMESH_` environment variable"),
        "the environment beats the file: {text}"
    );
    assert!(
        text.contains("key_prefix = \"devmesh:\"  # built-in default"),
        "{text}"
    );
    assert!(
        text.contains("postgres://devmesh:***@db:5432/devmesh"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "the password never shows");
}

#[test]
fn wrong_values_stop_with_status_2_and_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    /// Environment, arguments, and what the error message must contain.
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a [&'a str]);
    let cases: &[Case] = &[
        (
            &[("DEVMESH_MCP__LISTEN", "nonsense")],
            &["config", "show"],
            &[
                "`mcp.listen`",
                "nonsense",
                "127.0.0.1:8080",
                "DEVMESH_MCP__LISTEN",
            ],
        ),
        (
            &[("DEVMESH_DATABASE__MAX_CONNECTIONS", "0")],
            &["config", "show"],
            &["`database.max_connections`", "0", "1 to 1000"],
        ),
        (
            &[("DEVMESH_DATABASE__MAX_CONNECTIONS", "many")],
            &["config", "show"],
            &["`database.max_connections`", "many"],
        ),
        (
            &[("DEVMESH_SHUTDOWN__GRACE_PERIOD", "soon")],
            &["config", "show"],
            &["`shutdown.grace_period`", "soon", "\"30s\""],
        ),
        (
            &[("DEVMESH_NODE__ROLES", "api,web")],
            &["config", "show"],
            &["`node.roles`", "api,web", "api, mcp, worker, indexer"],
        ),
        (
            &[("DEVMESH_DATABASE__URL", "mysql://x@y/z")],
            &["config", "show"],
            &["`database.url`", "mysql://x@y/z", "postgres://"],
        ),
        (
            // A list given as one string: the message names the key, never the key's value.
            &[(
                "DEVMESH_SECRETS__PREVIOUS_MASTER_KEYS",
                "c2VjcmV0LXZhbHVlLW5vdC10by1zaG93IQ==",
            )],
            &["config", "show"],
            &["`secrets.previous_master_keys`", "is not shown"],
        ),
        (
            &[("DEVMESH_LOG__LEVEL", "loud!!")],
            &["config", "show"],
            &["`log.level`", "loud!!"],
        ),
        (
            &[(
                "DEVMESH_DATABASE__URL",
                "postgres://u:pw@h/db?sslmode=sometimes",
            )],
            &["config", "show"],
            &["`database.url`", "sslmode=sometimes", "verify-full"],
        ),
        (
            &[("DEVMESH_LOG__FORMAT", "xml")],
            &["config", "show"],
            &["`log.format`", "xml", "json"],
        ),
        (
            &[("DEVMESH_MCP__TASKS__TTL", "400d")],
            &["config", "show"],
            &["`mcp.tasks.ttl`", "400d", "1s to 30d"],
        ),
        (
            &[("DEVMESH_MCP__LISTNE", "1.2.3.4:1")],
            &["config", "show"],
            &["listne", "unknown key"],
        ),
        (
            &[],
            &["serve", "--roles", "web"],
            &["`node.roles`", "web", "command-line flag"],
        ),
        (
            &[],
            &["--config", "/no/such/devmesh.toml", "config", "show"],
            &["/no/such/devmesh.toml", "does not exist"],
        ),
    ];
    for (env, args, expected) in cases {
        let out = devmesh(dir.path(), env, args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{env:?} {args:?}: {err}");
        for e in *expected {
            assert!(
                err.contains(e),
                "{env:?} {args:?}: message lacks {e:?}:\n{err}"
            );
        }
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{err}"
        );
        assert!(
            !err.contains("c2VjcmV0LXZhbHVl"),
            "a secret is printed: {err}"
        );
    }

    std::fs::write(
        dir.path().join("devmesh.toml"),
        "[jobs]\nvisibility_timeout = \"0s\"\n[api]\nlisen = 1\n",
    )
    .unwrap();
    let out = devmesh(dir.path(), &[], &["config", "show"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("lisen") && stderr(&out).contains("devmesh.toml"),
        "{}",
        stderr(&out)
    );
    std::fs::write(
        dir.path().join("devmesh.toml"),
        "[jobs]\nvisibility_timeout = \"0s\"\n",
    )
    .unwrap();
    let out = devmesh(dir.path(), &[], &["config", "show"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("`jobs.visibility_timeout`: invalid value 0s"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn migrate_commands_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let status = stdout(&devmesh(
        dir.path(),
        &[],
        &["--data-dir", data, "migrate", "status"],
    ));
    assert!(status.starts_with("pending"), "{status}");
    let run = devmesh(dir.path(), &[], &["--data-dir", data, "migrate", "run"]);
    assert!(
        run.status.success() && stdout(&run).starts_with("applied 2026"),
        "{}",
        stdout(&run)
    );
    assert!(
        stdout(&devmesh(
            dir.path(),
            &[],
            &["--data-dir", data, "migrate", "status"]
        ))
        .starts_with("applied")
    );
    assert!(
        stdout(&devmesh(
            dir.path(),
            &[],
            &["--data-dir", data, "migrate", "run"]
        ))
        .contains("nothing to apply")
    );
    let revert = stdout(&devmesh(
        dir.path(),
        &[],
        &["--data-dir", data, "migrate", "revert"],
    ));
    assert!(revert.starts_with("reverted 2026"), "{revert}");
    let after = stdout(&devmesh(
        dir.path(),
        &[],
        &["--data-dir", data, "migrate", "status"],
    ));
    let lines: Vec<&str> = after.lines().collect();
    assert!(lines[0].starts_with("applied"), "{after}");
    assert!(
        lines.last().unwrap().starts_with("pending"),
        "the last one is pending again: {after}"
    );
}

async fn dead_letter_commands(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let bus = env.bus().await;
    let job = bus
        .queue
        .enqueue(NewJob::new("default", "hook", json!({"delivery": 9})))
        .await
        .unwrap();
    let d = bus
        .queue
        .fetch(
            "default",
            "n",
            std::time::Duration::from_secs(30),
            std::time::Duration::from_millis(1),
        )
        .await
        .unwrap()
        .unwrap();
    bus.queue
        .fail(&d, "signature mismatch", None)
        .await
        .unwrap();

    let mut vars = vec![(
        "DEVMESH_DATA_DIR".to_string(),
        env.config.data_dir.to_string_lossy().into_owned(),
    )];
    if let Some(url) = &env.config.database.url {
        vars.push(("DEVMESH_DATABASE__URL".into(), url.expose().into()));
    }
    if let Some(url) = &env.config.redis.url {
        vars.push(("DEVMESH_REDIS__URL".into(), url.expose().into()));
        vars.push((
            "DEVMESH_REDIS__KEY_PREFIX".into(),
            env.config.redis.key_prefix.clone(),
        ));
    }
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let dir = env.dir.path();
    let listed = devmesh(dir, &vars, &["jobs", "dead", "--queue", "default"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let line: serde_json::Value =
        serde_json::from_str(stdout(&listed).lines().next().expect("one dead job")).unwrap();
    assert_eq!(line["id"], job.id.as_str());
    assert_eq!(line["last_error"], "signature mismatch");
    assert_eq!(line["payload"], json!({"delivery": 9}));

    let depth = stdout(&devmesh(dir, &vars, &["jobs", "depth"]));
    assert!(
        depth
            .lines()
            .any(|l| l.starts_with("default") && l.trim_end().ends_with('1')),
        "{depth}"
    );

    let replayed = devmesh(
        dir,
        &vars,
        &["jobs", "replay", "--queue", "default", &job.id],
    );
    assert!(
        replayed.status.success() && stdout(&replayed).contains("replayed"),
        "{}",
        stderr(&replayed)
    );
    let again = devmesh(
        dir,
        &vars,
        &["jobs", "replay", "--queue", "default", &job.id],
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("no dead job"), "{}", stderr(&again));
    let d = bus
        .queue
        .fetch(
            "default",
            "n",
            std::time::Duration::from_secs(30),
            std::time::Duration::from_secs(2),
        )
        .await
        .unwrap();
    assert_eq!(d.expect("back on the queue").id, job.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_commands_on_sqlite() {
    dead_letter_commands(Shape::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_commands_on_redis() {
    dead_letter_commands(Shape::PostgresRedis).await;
}

/// The example configurations shipped with devmesh load as they are.
#[test]
fn shipped_example_configurations_are_valid() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["devmesh.toml.example", "config/production.toml"] {
        let path = root.join(file);
        let out = devmesh(
            dir.path(),
            &[],
            &["--config", path.to_str().unwrap(), "config", "show"],
        );
        assert!(out.status.success(), "{file}: {}", stderr(&out));
    }
    let out = devmesh(
        dir.path(),
        &[],
        &[
            "--config",
            root.join("config/production.toml").to_str().unwrap(),
            "config",
            "show",
        ],
    );
    let text = stdout(&out);
    assert!(
        text.contains(r#"format = "json""#)
            && text.contains("postgres://")
            && text.contains("rediss://"),
        "{text}"
    );
}

/// `devmesh org create` registers an organization against the configured database even
/// with open registration off, and its key works on a node serving that database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn org_create_prints_a_key_that_works() {
    let mut env = TestEnv::new(Shape::Sqlite).await;
    env.config.auth.open_registration = false;
    let data = env.config.data_dir.to_string_lossy().into_owned();
    let args = [
        "--data-dir",
        &data,
        "org",
        "create",
        "--name",
        "Acme",
        "--slug",
        "acme",
        "--admin-email",
        "ops@acme.io",
        "--admin-name",
        "Ops",
        "--json",
    ];
    let out = devmesh(
        env.dir.path(),
        &[("DEVMESH_ADMIN_PASSWORD", "correct horse battery")],
        &args,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let created: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let key = created["api_key"]["key"].as_str().unwrap().to_string();
    assert_eq!(created["organization"]["slug"], "acme");
    assert_eq!(created["user"]["role"], "owner");
    assert!(!stderr(&out).contains(&key), "the key goes to stdout only");

    // A taken slug and a weak password say what is wrong; nothing is printed as a key.
    let out = devmesh(
        env.dir.path(),
        &[("DEVMESH_ADMIN_PASSWORD", "correct horse battery")],
        &args,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("taken"), "{}", stderr(&out));
    let mut weak = args.to_vec();
    weak[7] = "globex";
    let out = devmesh(
        env.dir.path(),
        &[("DEVMESH_ADMIN_PASSWORD", "short")],
        &weak,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("admin_password"), "{}", stderr(&out));

    let app = env.spawn_app().await;
    app.wait_ready().await;
    let r = crate::rest::call(&app, "GET", "/api/v1/organization", Some(&key), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["name"], "Acme");
    let r = crate::rest::login(&app, "acme", "ops@acme.io", "correct horse battery").await;
    assert_eq!(r.status, 200);
}
