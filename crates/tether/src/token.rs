//! `tether token`: a signed HS256 token for development and tests.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

use crate::cli::TokenArgs;

pub fn print(args: TokenArgs) -> anyhow::Result<()> {
    println!("{}", sign(&args)?);
    Ok(())
}

fn sign(args: &TokenArgs) -> anyhow::Result<String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("clock before 1970")?
        .as_secs();
    let mut claims = json!({"sub": args.sub, "iat": now, "exp": now + args.ttl.as_secs()});
    // `--channels ''` is the empty list (allows nothing), not a list of "".
    let list = |l: &Option<Vec<String>>| {
        l.as_ref()
            .map(|l| Value::from(l.iter().filter(|p| !p.is_empty()).cloned().collect::<Vec<_>>()))
    };
    let optional = [
        ("role", args.role.clone().map(Value::from)),
        ("channels", list(&args.channels)),
        ("publish", list(&args.publish)),
        ("commands", list(&args.commands)),
    ];
    for (key, value) in optional {
        if let Some(v) = value {
            claims[key] = v;
        }
    }
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(args.secret.as_bytes()),
    )
    .context("signing failed")
}
