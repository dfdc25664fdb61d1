//! `tether pub`, `tether sub`, `tether agent`, built on the `tether-client` SDK.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};
use tether_client::{Client, ClientConfig, ClientError, SubscriptionItem};
use tether_protocol::server::event_frame;

use crate::cli::{AgentArgs, ClientArgs, PubArgs, SubArgs};

/// `http://h:p` → `ws://h:p/ws`; `https` → `wss`.
pub(crate) fn ws_url(url: &str) -> anyhow::Result<String> {
    for (from, to) in [("http://", "ws://"), ("https://", "wss://")] {
        if let Some(rest) = url.strip_prefix(from) {
            let rest = rest.trim_end_matches('/');
            return Ok(if rest.contains('/') {
                format!("{to}{rest}")
            } else {
                format!("{to}{rest}/ws")
            });
        }
    }
    if url.starts_with("ws://") || url.starts_with("wss://") {
        return Ok(url.to_owned());
    }
    bail!("--url must start with ws://, wss://, http:// or https://")
}

fn config(c: &ClientArgs) -> anyhow::Result<ClientConfig> {
    let mut config = ClientConfig::new(ws_url(&c.url)?);
    config.token = c.token.clone();
    config.client_id = c.client_id.clone();
    Ok(config)
}

/// `tether pub`: one publish; prints the ack frame; fails fast when the gateway
/// cannot be reached or refuses.
pub async fn publish(args: PubArgs) -> anyhow::Result<()> {
    let data: Value = serde_json::from_str(&args.json).context("the JSON argument is not valid JSON")?;
    let mut config = config(&args.client)?;
    config.reconnect_interval = Duration::from_millis(200);
    config.max_reconnect_delay = Duration::from_secs(1);
    config.max_reconnect_attempts = Some(3);
    config.request_timeout = Duration::from_secs(15);
    let client = Client::start(config)?;
    let frame = json!({"type": "publish", "channel": args.channel, "data": data});
    let result = client.send_request(frame).await;
    client.close().await;
    match result {
        Ok(ack) => {
            println!("{ack}");
            Ok(())
        }
        Err(ClientError::Gateway(body)) => Err(anyhow!("{}: {}", body.code, body.message)),
        Err(e) => Err(e.into()),
    }
}

/// `tether sub`: every event once, across reconnects and gateway restarts.
pub async fn subscribe(args: SubArgs) -> anyhow::Result<()> {
    let client = Client::start(config(&args.client)?)?;
    let mut sub = match args.since {
        Some(seq) => client.subscribe_since(&args.channel, seq, args.epoch.clone()).await?,
        None => client.subscribe(&args.channel).await?,
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            item = sub.next() => match item {
                None => bail!("the client closed: {:?}", client.state()),
                Some(Err(e)) => bail!("subscription ended: {e}"),
                Some(Ok(SubscriptionItem::Event(e))) => println!("{}", event_frame(&e)),
                Some(Ok(SubscriptionItem::Recovered(false))) => {
                    eprintln!("tether sub: events were missed beyond the gateway's history; continuing live");
                }
                Some(Ok(SubscriptionItem::Recovered(true))) => {}
            },
        }
    }
    client.close().await;
    Ok(())
}

/// `tether agent`: answers each task with `{"echo": payload, "processed_at": ms}`.
pub async fn agent(args: AgentArgs) -> anyhow::Result<()> {
    let client = Client::start(config(&args.client)?)?;
    let commands: Vec<&str> = args.commands.iter().map(String::as_str).collect();
    let mut tasks = client.register(&args.name, &commands, args.concurrency).await?;
    eprintln!("tether agent: registered {} for {:?}", args.name, args.commands);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            task = tasks.next() => {
                let Some(task) = task else { bail!("the client closed: {:?}", client.state()) };
                let data = json!({"echo": task.payload, "processed_at": tether_gateway::clock::now_ms()});
                client.task_result(&task.id, Ok(data)).await;
            }
        }
    }
    client.close().await;
    Ok(())
}
