//! Authentication and permissions: who a connection or HTTP request is, and what
//! its token allows.
//!
//! With no key configured auth is off: every principal may do everything (a
//! WARN line says so at start-up). With a key, every WebSocket and `/api/v1`
//! request needs a JWT (`Authorization: Bearer …` or `?access_token=…`), checked
//! with no leeway on `exp`. Claims: `sub` (the principal), `exp`, `role`
//! (`client` by default, `agent`, `admin`), and the pattern lists `channels`,
//! `publish`, `commands` (absent: everything; empty: nothing).
//!
//! **Boundary:** this module never sees a socket; the upgrade handler and the
//! connection ask it and act on the answer (4001/4003, 401/403, `forbidden`).

use std::collections::HashMap;

use axum::http::{header, HeaderMap};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tether_protocol::validate::{is_valid_principal, pattern_matches, INBOX_PREFIX};

/// How tokens are checked.
#[derive(Clone, Default)]
pub enum AuthSettings {
    /// Development mode: no tokens, everything allowed.
    #[default]
    Off,
    /// HS256 with a shared secret.
    Hs256 { secret: String },
    /// RS256 or ES256 with a PEM public key (the key type decides).
    PublicKeyPem { pem: Vec<u8> },
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.write_str(match self {
            AuthSettings::Off => "Off",
            AuthSettings::Hs256 { .. } => "Hs256(<secret>)",
            AuthSettings::PublicKeyPem { .. } => "PublicKeyPem(<key>)",
        })
    }
}

/// A key that cannot be used: fix the flag or file.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Missing, malformed, wrongly signed or expired: close 4001 / HTTP 401.
    #[error("{0}")]
    Invalid(String),
    /// Valid, but the principal may not connect at all (unknown role): close
    /// 4003 / HTTP 403.
    #[error("{0}")]
    Forbidden(String),
}

/// A principal's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The default.
    Client,
    /// May `register`.
    Agent,
    /// May `register` and read every inbox.
    Admin,
}

/// What a token allows (absent list: everything).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grants {
    pub role: Role,
    pub channels: Option<Vec<String>>,
    pub publish: Option<Vec<String>>,
    pub commands: Option<Vec<String>>,
}

/// Who a connection or request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The principal (token `sub`, or `client_id`/session with auth off).
    pub principal: String,
    /// Token expiry, seconds since the Unix epoch (auth on only).
    pub exp: Option<u64>,
    /// `None` with auth off: everything allowed.
    pub grants: Option<Grants>,
}

fn allowed(list: &Option<Vec<String>>, name: &str) -> bool {
    match list {
        None => true,
        Some(patterns) => patterns.iter().any(|p| pattern_matches(p, name)),
    }
}

impl Identity {
    /// An identity with auth off.
    pub fn unchecked(principal: String) -> Identity {
        Identity {
            principal,
            exp: None,
            grants: None,
        }
    }

    fn other_inbox(&self, channel: &str) -> bool {
        channel.strip_prefix(INBOX_PREFIX).is_some_and(|p| p != self.principal)
    }

    /// May it subscribe to (or read the history of) `channel`? Its own inbox
    /// always; another's only as `admin`; everything else by `channels`.
    pub fn may_subscribe(&self, channel: &str) -> bool {
        let Some(g) = &self.grants else { return true };
        if channel.strip_prefix(INBOX_PREFIX) == Some(self.principal.as_str()) {
            return true;
        }
        if self.other_inbox(channel) {
            return g.role == Role::Admin;
        }
        allowed(&g.channels, channel)
    }

    /// May it publish on `channel`? By `publish`; another principal's inbox only
    /// as `admin` (results there must come from the gateway).
    pub fn may_publish(&self, channel: &str) -> bool {
        let Some(g) = &self.grants else { return true };
        if self.other_inbox(channel) && g.role != Role::Admin {
            return false;
        }
        allowed(&g.publish, channel)
    }

    /// May it send command `command`?
    pub fn may_command(&self, command: &str) -> bool {
        self.grants.as_ref().is_none_or(|g| allowed(&g.commands, command))
    }

    /// May it `register` as an agent?
    pub fn may_register(&self) -> bool {
        self.grants
            .as_ref()
            .is_none_or(|g| matches!(g.role, Role::Agent | Role::Admin))
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    publish: Option<Vec<String>>,
    #[serde(default)]
    commands: Option<Vec<String>>,
}

/// Checks tokens; `None` in the gateway state means auth is off.
pub struct Authenticator {
    key: DecodingKey,
    validation: Validation,
}

impl Authenticator {
    /// The checker for `settings`, or `None` when auth is off.
    pub fn from_settings(settings: &AuthSettings) -> Result<Option<Authenticator>, KeyError> {
        let (key, alg) = match settings {
            AuthSettings::Off => return Ok(None),
            AuthSettings::Hs256 { secret } if secret.is_empty() => {
                return Err(KeyError("the JWT secret must not be empty".into()))
            }
            AuthSettings::Hs256 { secret } => (DecodingKey::from_secret(secret.as_bytes()), Algorithm::HS256),
            AuthSettings::PublicKeyPem { pem } => match DecodingKey::from_rsa_pem(pem) {
                Ok(k) => (k, Algorithm::RS256),
                Err(_) => match DecodingKey::from_ec_pem(pem) {
                    Ok(k) => (k, Algorithm::ES256),
                    Err(e) => return Err(KeyError(format!("not an RSA or EC public key in PEM: {e}"))),
                },
            },
        };
        let mut validation = Validation::new(alg);
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(Some(Authenticator { key, validation }))
    }

    /// Checks a token and returns who it is.
    pub fn authenticate(&self, token: &str) -> Result<Identity, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            AuthError::Invalid(match e.kind() {
                ErrorKind::ExpiredSignature => "token expired".into(),
                ErrorKind::InvalidSignature => "token signature is invalid".into(),
                ErrorKind::InvalidAlgorithm => "token algorithm is not accepted".into(),
                _ => format!("invalid token: {e}"),
            })
        })?;
        let c = data.claims;
        if !is_valid_principal(&c.sub) {
            return Err(AuthError::Invalid(
                "token `sub` must be 1 to 128 printable ASCII characters".into(),
            ));
        }
        let role = match c.role.as_deref() {
            None | Some("client") => Role::Client,
            Some("agent") => Role::Agent,
            Some("admin") => Role::Admin,
            Some(other) => {
                return Err(AuthError::Forbidden(format!(
                    "unknown role `{}`",
                    other.chars().take(32).collect::<String>()
                )))
            }
        };
        Ok(Identity {
            principal: c.sub,
            exp: Some(c.exp),
            grants: Some(Grants {
                role,
                channels: c.channels,
                publish: c.publish,
                commands: c.commands,
            }),
        })
    }
}

/// The token of a request: `Authorization: Bearer …`, else `?access_token=`.
pub fn request_token<'a>(headers: &'a HeaderMap, query: &'a HashMap<String, String>) -> Option<&'a str> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    header
        .or_else(|| query.get("access_token").map(String::as_str))
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(role: Role, channels: Option<&[&str]>) -> Identity {
        Identity {
            principal: "alice".into(),
            exp: Some(u64::MAX),
            grants: Some(Grants {
                role,
                channels: channels.map(|c| c.iter().map(|s| s.to_string()).collect()),
                publish: Some(vec![]),
                commands: None,
            }),
        }
    }

    #[test]
    fn inbox_rules() {
        let client = grants(Role::Client, Some(&[]));
        assert!(client.may_subscribe("inbox:alice"), "own inbox always");
        assert!(!client.may_subscribe("inbox:bob"), "another's never for a client");
        assert!(!client.may_subscribe("orders"), "empty list allows nothing");
        let wide = grants(Role::Client, None);
        assert!(!wide.may_subscribe("inbox:bob"), "not even with every channel allowed");
        assert!(wide.may_subscribe("orders"));
        let admin = grants(Role::Admin, Some(&[]));
        assert!(admin.may_subscribe("inbox:bob"));
    }

    #[test]
    fn patterns_and_roles() {
        let id = grants(Role::Client, Some(&["orders:*", "news"]));
        assert!(id.may_subscribe("orders:eu"));
        assert!(id.may_subscribe("news"));
        assert!(!id.may_subscribe("newsy"));
        assert!(!id.may_publish("orders:eu"), "empty publish list");
        assert!(id.may_command("anything"), "absent commands claim");
        assert!(!id.may_register());
        assert!(grants(Role::Agent, None).may_register());
        assert!(Identity::unchecked("x".into()).may_publish("inbox:y"));
    }
}
