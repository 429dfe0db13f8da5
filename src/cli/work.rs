//! `devmesh tasks list|show|cancel` and `devmesh agents list|show`: a client of the REST
//! API (`/api/v1/tasks`, `/api/v1/agents`) with an API key, so that what a command shows
//! is what the key may see, on any deployment. The server is `--url`, or this
//! configuration's `api.listen`.

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::config::Config;

/// Where and as whom.
#[derive(Debug, clap::Args)]
pub struct Server {
    /// The devmesh API, e.g. https://devmesh.example.com [default: http://<api.listen>]
    #[arg(long, env = "DEVMESH_URL", global = true)]
    url: Option<String>,
    /// An API key (or access token) of the organization
    #[arg(long, env = "DEVMESH_API_KEY", hide_env_values = true, global = true)]
    api_key: Option<String>,
    /// Print the API's JSON instead of a table
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum TasksCommand {
    /// List tasks, newest first
    List {
        /// Only tasks in this state (queued, assigned, running, completed, failed, cancelled, timed_out)
        #[arg(long)]
        status: Option<String>,
        /// Only the tasks of this agent
        #[arg(long)]
        agent: Option<String>,
        /// At most this many (1 to 200)
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        server: Server,
    },
    /// Show a task and its events
    Show {
        id: String,
        #[command(flatten)]
        server: Server,
    },
    /// Cancel a task that has not finished
    Cancel {
        id: String,
        /// Why
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        server: Server,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum AgentsCommand {
    /// List agents, newest first
    List {
        /// Only agents with this capability
        #[arg(long)]
        capability: Option<String>,
        /// Only agents in this state (pending, active, suspended, retired)
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        server: Server,
    },
    /// Show an agent: status, presence, load, circuit, statistics
    Show {
        id: String,
        #[command(flatten)]
        server: Server,
    },
}

struct Client {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl Client {
    fn new(config: &Config, server: &Server) -> anyhow::Result<Self> {
        let Some(key) = server.api_key.clone() else {
            bail!("an API key is needed: --api-key or DEVMESH_API_KEY");
        };
        let base = server
            .url
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.api.listen.0));
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            key,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()?,
        })
    }

    /// Calls the API; a 4xx or 5xx is an error carrying the API's message.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("cannot reach devmesh at {}", self.base))?;
        let status = res.status();
        let text = res.text().await?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !status.is_success() {
            let message = value["error"]["message"].as_str().unwrap_or(&text);
            bail!(
                "{} {}: {message}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            );
        }
        Ok(value)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }
}

/// `key=value` pairs as a query string, values percent-encoded.
fn query(pairs: &[(&str, Option<String>)]) -> String {
    let encoded: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", urlencoding(v))))
        .collect();
    if encoded.is_empty() {
        String::new()
    } else {
        format!("?{}", encoded.join("&"))
    }
}

fn urlencoding(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Prints rows as aligned columns under a header.
fn table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row);
    }
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub async fn run_tasks(config: Config, cmd: TasksCommand) -> anyhow::Result<()> {
    match cmd {
        TasksCommand::List {
            status,
            agent,
            limit,
            server,
        } => {
            let client = Client::new(&config, &server)?;
            let path = format!(
                "/api/v1/tasks{}",
                query(&[
                    ("status", status),
                    ("agent_id", agent),
                    ("limit", Some(limit.to_string()))
                ])
            );
            let page = client.get(&path).await?;
            if server.json {
                return print_json(&page);
            }
            let rows = page["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    vec![
                        text(&t["id"]),
                        text(&t["status"]),
                        text(&t["priority"]),
                        text(&t["agent_id"]),
                        text(&t["title"]),
                    ]
                })
                .collect();
            table(&["ID", "STATUS", "PRIORITY", "AGENT", "TITLE"], rows);
        }
        TasksCommand::Show { id, server } => {
            let client = Client::new(&config, &server)?;
            let task = client
                .get(&format!("/api/v1/tasks/{}", urlencoding(&id)))
                .await?;
            let events = client
                .get(&format!("/api/v1/tasks/{}/events", urlencoding(&id)))
                .await?;
            if server.json {
                return print_json(&json!({ "task": task, "events": events }));
            }
            for field in [
                "id",
                "title",
                "type",
                "status",
                "priority",
                "strategy",
                "agent_id",
                "attempts",
                "waiting_reason",
                "created_at",
                "finished_at",
            ] {
                println!("{field:<15} {}", text(&task[field]));
            }
            if !task["output"].is_null() {
                println!("{:<15} {}", "output", task["output"]);
            }
            if !task["error"].is_null() {
                println!("{:<15} {}", "error", text(&task["error"]["message"]));
            }
            println!();
            let rows = events
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    vec![
                        text(&e["at"]),
                        format!("{} -> {}", text(&e["from"]), text(&e["to"])),
                        text(&e["agent_id"]),
                        text(&e["actor"]),
                        text(&e["reason"]),
                    ]
                })
                .collect();
            table(&["AT", "TRANSITION", "AGENT", "ACTOR", "REASON"], rows);
        }
        TasksCommand::Cancel { id, reason, server } => {
            let client = Client::new(&config, &server)?;
            let task = client
                .call(
                    reqwest::Method::POST,
                    &format!("/api/v1/tasks/{}/cancel", urlencoding(&id)),
                    Some(json!({ "reason": reason })),
                )
                .await?;
            if server.json {
                return print_json(&task);
            }
            println!("task {} {}", text(&task["id"]), text(&task["status"]));
        }
    }
    Ok(())
}

pub async fn run_agents(config: Config, cmd: AgentsCommand) -> anyhow::Result<()> {
    match cmd {
        AgentsCommand::List {
            capability,
            status,
            server,
        } => {
            let client = Client::new(&config, &server)?;
            let path = format!(
                "/api/v1/agents{}",
                query(&[
                    ("capability", capability),
                    ("status", status),
                    ("limit", Some("200".into()))
                ])
            );
            let page = client.get(&path).await?;
            if server.json {
                return print_json(&page);
            }
            let rows = page["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| {
                    let caps: Vec<String> = a["capabilities"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|c| text(&c["name"]))
                        .collect();
                    let online = if a["presence"]["online"] == true {
                        "online"
                    } else {
                        "offline"
                    };
                    vec![
                        text(&a["id"]),
                        text(&a["name"]),
                        text(&a["status"]),
                        online.to_string(),
                        format!("{}/{}", text(&a["load"]), text(&a["max_concurrent_tasks"])),
                        text(&a["circuit"]["state"]),
                        caps.join(","),
                    ]
                })
                .collect();
            table(
                &[
                    "ID",
                    "NAME",
                    "STATUS",
                    "PRESENCE",
                    "LOAD",
                    "CIRCUIT",
                    "CAPABILITIES",
                ],
                rows,
            );
        }
        AgentsCommand::Show { id, server } => {
            let client = Client::new(&config, &server)?;
            let agent = client
                .get(&format!("/api/v1/agents/{}", urlencoding(&id)))
                .await?;
            if server.json {
                return print_json(&agent);
            }
            for field in [
                "id",
                "name",
                "status",
                "model",
                "max_concurrent_tasks",
                "load",
            ] {
                println!("{field:<22} {}", text(&agent[field]));
            }
            println!("{:<22} {}", "online", text(&agent["presence"]["online"]));
            println!(
                "{:<22} {}",
                "last_seen_at",
                text(&agent["presence"]["last_seen_at"])
            );
            println!("{:<22} {}", "circuit", text(&agent["circuit"]["state"]));
            let s = &agent["statistics"];
            for field in [
                "completed",
                "failed",
                "timed_out",
                "success_rate",
                "latency_p50_ms",
                "cost_usd",
            ] {
                println!("{:<22} {}", field, text(&s[field]));
            }
        }
    }
    Ok(())
}
