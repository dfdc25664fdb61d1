//! `tether pub`, `tether sub`, `tether agent`: a small internal WebSocket client
//! (until the Rust SDK lands), speaking the protocol through `tether-protocol`.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tether_protocol::server::{ServerMessage, Welcome};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::cli::{AgentArgs, ClientArgs, PubArgs, SubArgs};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long to wait between reconnects of `sub` and `agent`.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// `http://h:p` → `ws://h:p/ws`; adds `client_id`.
fn ws_url(c: &ClientArgs) -> anyhow::Result<String> {
    let mut url = c.url.clone();
    for (from, to) in [("http://", "ws://"), ("https://", "wss://")] {
        if let Some(rest) = url.strip_prefix(from) {
            let rest = rest.trim_end_matches('/');
            url = if rest.contains('/') {
                format!("{to}{rest}")
            } else {
                format!("{to}{rest}/ws")
            };
        }
    }
    if !url.starts_with("ws://") && !url.starts_with("wss://") {
        bail!("--url must start with ws://, wss://, http:// or https://");
    }
    let mut params = Vec::new();
    if let Some(id) = &c.client_id {
        params.push(format!("client_id={}", encode(id)));
    }
    if !params.is_empty() {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&params.join("&"));
    }
    Ok(url)
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn connect(c: &ClientArgs) -> anyhow::Result<(Ws, Welcome)> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = ws_url(c)?.into_client_request().context("bad --url")?;
    // The token goes in a header, so that it never appears in a URL or a log.
    if let Some(t) = &c.token {
        let value = format!("Bearer {t}")
            .parse()
            .context("the token is not a valid header value")?;
        request.headers_mut().insert("Authorization", value);
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .with_context(|| format!("cannot connect to {}", c.url))?;
    match next_frame(&mut ws).await? {
        ServerMessage::Welcome { data } => Ok((ws, data)),
        other => bail!("expected welcome, got {other:?}"),
    }
}

async fn next_frame(ws: &mut Ws) -> anyhow::Result<ServerMessage> {
    Ok(ServerMessage::parse(&next_text(ws).await?)?)
}

async fn next_text(ws: &mut Ws) -> anyhow::Result<String> {
    loop {
        match ws.next().await {
            None => bail!("connection closed"),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(Message::Text(t))) => return Ok(t.to_string()),
            Some(Ok(Message::Close(f))) => {
                let why = f
                    .map(|f| format!("{} {}", u16::from(f.code), f.reason))
                    .unwrap_or_default();
                bail!("connection closed by the gateway {why}")
            }
            Some(Ok(_)) => {}
        }
    }
}

fn next_id() -> String {
    tether_gateway::clock::random_id("cli-")
}

/// `tether pub`.
pub async fn publish(args: PubArgs) -> anyhow::Result<()> {
    let data: Value = serde_json::from_str(&args.json).context("the JSON argument is not valid JSON")?;
    let (mut ws, _) = connect(&args.client).await?;
    let id = next_id();
    let frame = json!({"type": "publish", "id": id, "channel": args.channel, "data": data});
    ws.send(Message::text(frame.to_string())).await?;
    loop {
        let text = next_text(&mut ws).await?;
        let msg = ServerMessage::parse(&text)?;
        match msg {
            ServerMessage::Ack { id: ref got, .. } if *got == id => {
                println!("{text}");
                let _ = ws.close(None).await;
                return Ok(());
            }
            ServerMessage::Error { id: Some(ref got), .. } if *got == id => return Err(anyhow!("{text}")),
            ServerMessage::Error { id: None, .. } => return Err(anyhow!("{text}")),
            _ => {}
        }
    }
}

/// `tether sub`: reconnects with `since` so that nothing is missed or repeated.
pub async fn subscribe(args: SubArgs) -> anyhow::Result<()> {
    let mut since = args.since.map(|s| (s, args.epoch.clone()));
    loop {
        match sub_once(&args, &mut since).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                eprintln!("tether sub: {e:#}; reconnecting");
                tokio::time::sleep(RECONNECT_DELAY).await;
            }
        }
    }
}

async fn sub_once(args: &SubArgs, since: &mut Option<(u64, Option<String>)>) -> anyhow::Result<()> {
    let (mut ws, welcome) = connect(&args.client).await?;
    let mut frame = json!({"type": "subscribe", "id": next_id(), "channel": args.channel});
    if let Some((seq, epoch)) = since.clone() {
        frame["since"] = json!({"seq": seq, "epoch": epoch});
    }
    ws.send(Message::text(frame.to_string())).await?;
    let mut ping = tokio::time::interval(Duration::from_millis(welcome.heartbeat_interval_ms.max(100)));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = ping.tick() => ws.send(Message::text(json!({"type": "ping", "id": next_id()}).to_string())).await?,
            text = next_text(&mut ws) => {
                let text = text?;
                match ServerMessage::parse(&text)? {
                    ServerMessage::Event(e) if e.channel == args.channel => {
                        println!("{text}");
                        *since = Some((e.seq, Some(e.epoch)));
                    }
                    ServerMessage::Ack { data, .. } if data.get("recovered") == Some(&Value::Bool(false)) => {
                        eprintln!("tether sub: history not recoverable; continuing from the live position");
                    }
                    ServerMessage::Error { error, .. } => bail!("{}: {}", error.code, error.message),
                    _ => {}
                }
            }
        }
    }
}

/// `tether agent`: answers every task with `{"echo": payload, "processed_at": ms}`.
pub async fn agent(args: AgentArgs) -> anyhow::Result<()> {
    loop {
        match agent_once(&args).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                eprintln!("tether agent: {e:#}; reconnecting");
                tokio::time::sleep(RECONNECT_DELAY).await;
            }
        }
    }
}

async fn agent_once(args: &AgentArgs) -> anyhow::Result<()> {
    let (mut ws, welcome) = connect(&args.client).await?;
    let register = json!({"type": "register", "id": next_id(),
        "data": {"name": args.name, "commands": args.commands, "concurrency": args.concurrency}});
    ws.send(Message::text(register.to_string())).await?;
    eprintln!("tether agent: registered {} for {:?}", args.name, args.commands);
    let mut ping = tokio::time::interval(Duration::from_millis(welcome.heartbeat_interval_ms.max(100)));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = ping.tick() => ws.send(Message::text(json!({"type": "ping", "id": next_id()}).to_string())).await?,
            msg = next_frame(&mut ws) => {
                match msg? {
                    ServerMessage::Task { id, data } => {
                        let result = json!({"type": "task_result", "id": id,
                            "data": {"echo": data.payload, "processed_at": tether_gateway::clock::now_ms()}});
                        ws.send(Message::text(result.to_string())).await?;
                    }
                    ServerMessage::Error { error, .. } => eprintln!("tether agent: {}: {}", error.code, error.message),
                    _ => {}
                }
            }
        }
    }
}
