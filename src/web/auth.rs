//! Who is asking, and may they act: `[web] auth`, roles, CSRF tokens.
//!
//! Without `[web.auth]` the server binds loopback only and everybody who
//! reaches it is the `local` admin; requests must then name a loopback host
//! (`Host: 127.0.0.1:9800`, `localhost`, `[::1]`), so a web page elsewhere
//! cannot reach the dashboard through DNS rebinding. With `[web.auth]`
//! every request carries HTTP Basic credentials (users with an argon2
//! `password_hash`) or `Authorization: Bearer TOKEN` (users with a
//! `token_sha256`, for scripts). Roles: `viewer` reads, `admin` also acts.
//!
//! Every action is a POST carrying a CSRF token bound to the user: an HMAC
//! of the user name under a key drawn when the server starts (a restart
//! invalidates open forms; reload the page).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::queue::config::Secret;

/// `[web]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Where `alertflow web` listens unless `--listen` says otherwise.
    pub listen: Option<String>,
    /// `[web.auth]`: who may see the pages and who may act.
    pub auth: Option<AuthConfig>,
}

/// `[web.auth]`: the users.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub users: Vec<WebUser>,
}

/// `[[web.auth.users]]`: a person (password) or a script (token).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebUser {
    pub name: String,
    pub role: Role,
    /// An argon2 PHC string (`alertflow web hash-password`).
    #[serde(default)]
    pub password_hash: Option<Secret>,
    /// The SHA-256 of a bearer token, hex (`alertflow web new-token`).
    #[serde(default)]
    pub token_sha256: Option<Secret>,
}

/// What a user may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Admin => "admin",
        }
    }
}

/// Check `[web]`; the error names the key.
pub fn validate(web: &WebConfig) -> Result<(), (String, String)> {
    let Some(auth) = &web.auth else {
        return Ok(());
    };
    if auth.users.is_empty() {
        return Err((
            "web.auth.users".into(),
            "lists nobody: add a [[web.auth.users]] entry (name, role and password_hash or token_sha256), or remove [web.auth]".into(),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, u) in auth.users.iter().enumerate() {
        let key = |k: &str| format!("web.auth.users[{i}].{k}");
        if u.name.is_empty() || u.name.contains(':') || u.name.chars().any(char::is_whitespace) {
            return Err((
                key("name"),
                "must be a non-empty name without ':' or spaces".into(),
            ));
        }
        if !seen.insert(u.name.as_str()) {
            return Err((key("name"), format!("{:?} is listed twice", u.name)));
        }
        match (&u.password_hash, &u.token_sha256) {
            (Some(h), None) => {
                PasswordHash::new(h.expose()).map_err(|e| {
                    (
                        key("password_hash"),
                        format!("is not an argon2 hash ({e}); make one with `alertflow web hash-password`"),
                    )
                })?;
            }
            (None, Some(t)) => {
                let t = t.expose();
                if t.len() != 64 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err((
                        key("token_sha256"),
                        "must be 64 hex digits (the SHA-256 of the token); make one with `alertflow web new-token`".into(),
                    ));
                }
            }
            _ => {
                return Err((
                    key("password_hash"),
                    "give exactly one of password_hash and token_sha256".into(),
                ));
            }
        }
    }
    Ok(())
}

/// Who made a request.
#[derive(Clone, Debug, Serialize)]
pub struct Actor {
    pub name: String,
    pub role: Role,
    /// The peer address.
    pub remote: String,
}

impl Actor {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// Verifies credentials and CSRF tokens.
pub struct Gate {
    users: Vec<WebUser>,
    enabled: bool,
    /// Key of the CSRF HMAC, drawn at start.
    csrf_key: [u8; 32],
    /// SHA-256 of `name:password` pairs already verified (argon2 costs tens
    /// of milliseconds; a browser sends Basic credentials on every request).
    verified: Mutex<HashMap<[u8; 32], usize>>,
}

type HmacSha256 = Hmac<Sha256>;

/// Verified credentials remembered at most.
const VERIFIED_CACHE: usize = 1024;

impl Gate {
    pub fn new(web: &WebConfig) -> Gate {
        let mut csrf_key = [0u8; 32];
        csrf_key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        csrf_key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        Gate {
            enabled: web.auth.is_some(),
            users: web
                .auth
                .as_ref()
                .map(|a| a.users.clone())
                .unwrap_or_default(),
            csrf_key,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `[web.auth]` is configured.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The CSRF token of `actor`'s forms.
    pub fn csrf_token(&self, actor: &Actor) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.csrf_key).expect("any key length");
        mac.update(actor.name.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// Whether `token` is `actor`'s CSRF token (constant time).
    pub fn csrf_ok(&self, actor: &Actor, token: &str) -> bool {
        let Some(bytes) = unhex(token) else {
            return false;
        };
        let mut mac = HmacSha256::new_from_slice(&self.csrf_key).expect("any key length");
        mac.update(actor.name.as_bytes());
        mac.verify_slice(&bytes).is_ok()
    }

    /// Who sent `headers` from `remote`, or why not.
    pub fn identify(&self, headers: &HeaderMap, remote: &str) -> Result<Actor, Refusal> {
        if !self.enabled {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            if !is_loopback_host(host) {
                return Err(Refusal::ForeignHost(host.to_string()));
            }
            return Ok(Actor {
                name: "local".into(),
                role: Role::Admin,
                remote: remote.to_string(),
            });
        }
        let value = headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .ok_or(Refusal::NoCredentials)?;
        let idx = if let Some(token) = value.strip_prefix("Bearer ") {
            let digest = hex(&Sha256::digest(token.trim().as_bytes()));
            self.users
                .iter()
                .position(|u| {
                    u.token_sha256
                        .as_ref()
                        .is_some_and(|t| t.expose().eq_ignore_ascii_case(&digest))
                })
                .ok_or(Refusal::BadCredentials(None))?
        } else if let Some(b64) = value.strip_prefix("Basic ") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or(Refusal::BadCredentials(None))?;
            let (name, password) = decoded
                .split_once(':')
                .ok_or(Refusal::BadCredentials(None))?;
            self.verify_password(name, password)
                .ok_or_else(|| Refusal::BadCredentials(Some(name.to_string())))?
        } else {
            return Err(Refusal::NoCredentials);
        };
        let u = &self.users[idx];
        Ok(Actor {
            name: u.name.clone(),
            role: u.role,
            remote: remote.to_string(),
        })
    }

    fn verify_password(&self, name: &str, password: &str) -> Option<usize> {
        let pair: [u8; 32] = Sha256::digest(format!("{name}:{password}").as_bytes()).into();
        if let Some(i) = self.verified.lock().expect("not poisoned").get(&pair) {
            return Some(*i);
        }
        let idx = self.users.iter().position(|u| u.name == name)?;
        let hash = self.users[idx].password_hash.as_ref()?;
        let parsed = PasswordHash::new(hash.expose()).ok()?;
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .ok()?;
        let mut cache = self.verified.lock().expect("not poisoned");
        if cache.len() >= VERIFIED_CACHE {
            cache.clear();
        }
        cache.insert(pair, idx);
        Some(idx)
    }
}

/// Why a request was turned away.
#[derive(Debug)]
pub enum Refusal {
    NoCredentials,
    /// Wrong password or token (the user name when one was given).
    BadCredentials(Option<String>),
    /// Without auth, a request naming a host that is not loopback.
    ForeignHost(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::NoCredentials | Refusal::BadCredentials(_) => (
                StatusCode::UNAUTHORIZED,
                [(
                    header::WWW_AUTHENTICATE,
                    "Basic realm=\"alertflow\", charset=\"UTF-8\"",
                )],
                "sign in: HTTP Basic (a [[web.auth.users]] password) or Authorization: Bearer TOKEN\n",
            )
                .into_response(),
            Refusal::ForeignHost(_) => (
                StatusCode::FORBIDDEN,
                "this dashboard answers to a loopback host name only (127.0.0.1, localhost, [::1]) while [web.auth] is not configured\n",
            )
                .into_response(),
        }
    }
}

/// Whether a `Host` header names loopback (with or without a port).
pub fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The middleware: identify the caller and hand the [`Actor`] to handlers.
pub async fn require(
    State(state): State<Arc<crate::web::WebState>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    match state.gate.identify(req.headers(), &peer.ip().to_string()) {
        Ok(actor) => {
            req.extensions_mut().insert(actor);
            next.run(req).await
        }
        Err(refusal) => {
            if let Refusal::BadCredentials(user) = &refusal {
                tracing::warn!(remote = %peer.ip(), user = user.as_deref().unwrap_or(""), path = req.uri().path(), "web: wrong credentials");
            }
            refusal.into_response()
        }
    }
}

/// Hash a password for `[[web.auth.users]] password_hash` (argon2id, a
/// random salt).
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    let salt = SaltString::encode_b64(&bytes).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// A new bearer token and the SHA-256 to configure for it.
pub fn new_token() -> (String, String) {
    let token = format!(
        "af_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let digest = hex(&Sha256::digest(token.as_bytes()));
    (token, digest)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), v.parse().unwrap());
        }
        h
    }

    fn gate() -> (Gate, String) {
        let (token, digest) = new_token();
        let web = WebConfig {
            listen: None,
            auth: Some(AuthConfig {
                users: vec![
                    WebUser {
                        name: "ann".into(),
                        role: Role::Admin,
                        password_hash: Some(Secret::new(hash_password("correct horse").unwrap())),
                        token_sha256: None,
                    },
                    WebUser {
                        name: "grafana".into(),
                        role: Role::Viewer,
                        password_hash: None,
                        token_sha256: Some(Secret::new(digest)),
                    },
                ],
            }),
        };
        validate(&web).unwrap();
        (Gate::new(&web), token)
    }

    fn basic(user: &str, pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    }

    #[test]
    fn passwords_and_tokens_identify_users_with_their_roles() {
        let (g, token) = gate();
        let a = g
            .identify(
                &headers(&[(header::AUTHORIZATION, &basic("ann", "correct horse"))]),
                "10.0.0.1",
            )
            .unwrap();
        assert_eq!((a.name.as_str(), a.role), ("ann", Role::Admin));
        // Again, from the cache of verified pairs.
        assert!(
            g.identify(
                &headers(&[(header::AUTHORIZATION, &basic("ann", "correct horse"))]),
                "x"
            )
            .is_ok()
        );
        assert!(matches!(
            g.identify(
                &headers(&[(header::AUTHORIZATION, &basic("ann", "wrong"))]),
                "x"
            ),
            Err(Refusal::BadCredentials(Some(_)))
        ));
        // A token user cannot sign in with a password, nor the reverse.
        assert!(
            g.identify(
                &headers(&[(header::AUTHORIZATION, &basic("grafana", &token))]),
                "x"
            )
            .is_err()
        );
        let v = g
            .identify(
                &headers(&[(header::AUTHORIZATION, &format!("Bearer {token}"))]),
                "x",
            )
            .unwrap();
        assert_eq!((v.name.as_str(), v.role), ("grafana", Role::Viewer));
        assert!(
            g.identify(&headers(&[(header::AUTHORIZATION, "Bearer af_wrong")]), "x")
                .is_err()
        );
        assert!(matches!(
            g.identify(&HeaderMap::new(), "x"),
            Err(Refusal::NoCredentials)
        ));
    }

    #[test]
    fn csrf_tokens_are_bound_to_the_user_and_the_server() {
        let (g, _) = gate();
        let ann = Actor {
            name: "ann".into(),
            role: Role::Admin,
            remote: String::new(),
        };
        let bob = Actor {
            name: "bob".into(),
            ..ann.clone()
        };
        let t = g.csrf_token(&ann);
        assert!(g.csrf_ok(&ann, &t));
        assert!(!g.csrf_ok(&bob, &t));
        assert!(!g.csrf_ok(&ann, ""));
        assert!(!g.csrf_ok(&ann, "zz"));
        let (other, _) = gate();
        assert!(
            !other.csrf_ok(&ann, &t),
            "another server start, another key"
        );
    }

    #[test]
    fn without_auth_only_loopback_host_names_are_answered() {
        let g = Gate::new(&WebConfig::default());
        for host in [
            "127.0.0.1:9800",
            "localhost:9800",
            "[::1]:9800",
            "localhost",
        ] {
            let a = g
                .identify(&headers(&[(header::HOST, host)]), "127.0.0.1")
                .unwrap();
            assert_eq!((a.name.as_str(), a.role), ("local", Role::Admin), "{host}");
        }
        for host in ["evil.example:9800", "10.0.0.5:9800", ""] {
            assert!(
                matches!(
                    g.identify(&headers(&[(header::HOST, host)]), "127.0.0.1"),
                    Err(Refusal::ForeignHost(_))
                ),
                "{host}"
            );
        }
    }

    #[test]
    fn bad_auth_config_names_the_key() {
        let user = |hash: Option<&str>, tok: Option<&str>| WebConfig {
            listen: None,
            auth: Some(AuthConfig {
                users: vec![WebUser {
                    name: "ann".into(),
                    role: Role::Admin,
                    password_hash: hash.map(Secret::new),
                    token_sha256: tok.map(Secret::new),
                }],
            }),
        };
        let key = |w: WebConfig| validate(&w).unwrap_err().0;
        assert_eq!(
            key(user(Some("plain"), None)),
            "web.auth.users[0].password_hash"
        );
        assert_eq!(
            key(user(None, Some("abc"))),
            "web.auth.users[0].token_sha256"
        );
        assert_eq!(key(user(None, None)), "web.auth.users[0].password_hash");
        let empty = WebConfig {
            listen: None,
            auth: Some(AuthConfig::default()),
        };
        assert_eq!(key(empty), "web.auth.users");
        // Debug never shows a hash.
        let dbg = format!("{:?}", user(Some("$argon2id$secretish"), None));
        assert!(!dbg.contains("secretish"), "{dbg}");
    }
}
