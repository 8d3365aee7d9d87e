//! Cookies, the signed-in staff member of a request, and CSRF tokens.
//!
//! - `sanyu_session`: the session token (`HttpOnly`, `SameSite=Lax`,
//!   `Secure` unless `console.secure_cookie` is off); the row holds its hash.
//! - `sanyu_challenge`: the browser's secret of a code it asked for (path
//!   `/sign-in`, 10 minutes).
//! - `sanyu_pre`: the sign-in forms' CSRF token before there is a session
//!   (double submit: the cookie and the form field must agree).
//! - Once signed in, every state-changing form carries the session's own
//!   synchronizer token, checked against the session row.

use axum::http::{HeaderMap, HeaderValue, Method, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use rand::RngCore;
use sanyu_domain::{Principal, Role};
use sanyu_store::console::{self as store, SessionCheck};
use sanyu_store::entities::console_session;

use crate::AppState;
use crate::audit::{self, Peer};
use crate::error::ApiError;

pub const SESSION_COOKIE: &str = "sanyu_session";
pub const CHALLENGE_COOKIE: &str = "sanyu_challenge";
pub const PRE_COOKIE: &str = "sanyu_pre";
pub const LANG_COOKIE: &str = "sanyu_lang";

/// The console's settings, from `[console]`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub secure_cookie: bool,
    pub idle: chrono::Duration,
    pub absolute: chrono::Duration,
    pub key: store::ConsoleKey,
    pub limits: store::CodeLimits,
    /// Dates are shown in this zone.
    pub tz: chrono_tz::Tz,
    /// An SMS provider is configured: a code may go by SMS.
    pub sms_enabled: bool,
    /// Finds the case of an acknowledgement link (`/a/<token>`).
    pub ack_key: sanyu_store::ack_links::AckKey,
    /// How long after its notification an acknowledgement link holds.
    pub ack_link_ttl: chrono::Duration,
    /// The channels each level requires (`notify.channels`): a person's
    /// preferences add to them.
    pub channels: sanyu_platform::config::ChannelsPerLevel,
    /// The channels this deployment can send on (email, and SMS, voice and
    /// IM where their provider is configured).
    pub available: Vec<sanyu_platform::config::NotifyChannel>,
}

impl Settings {
    pub fn from_config(config: &sanyu_platform::Config) -> Result<Self, String> {
        let key = store::ConsoleKey::from_data_key(config.security.data_key.expose())
            .map_err(|e| e.to_string())?;
        Ok(Self {
            secure_cookie: config.console.secure_cookie,
            idle: chrono::Duration::minutes(config.console.idle_timeout_minutes.max(1)),
            absolute: chrono::Duration::hours(config.console.absolute_timeout_hours.max(1)),
            key,
            limits: store::CodeLimits::default(),
            tz: config
                .notify
                .time_zone
                .parse()
                .unwrap_or(chrono_tz::Asia::Shanghai),
            sms_enabled: config.sms.primary.is_some(),
            ack_key: sanyu_store::ack_links::AckKey::from_data_key(
                config.security.data_key.expose(),
            )
            .map_err(|e| e.to_string())?,
            ack_link_ttl: chrono::Duration::hours(config.console.ack_link_ttl_hours.max(1)),
            channels: config.notify.channels.clone(),
            available: {
                use sanyu_platform::config::NotifyChannel as C;
                C::ALL
                    .into_iter()
                    .filter(|c| match c {
                        C::Sms => config.sms.primary.is_some(),
                        C::Voice => config.voice.provider.is_some(),
                        C::Im => config.im.provider.is_some(),
                        C::Email => true,
                    })
                    .collect()
            },
        })
    }
}

/// The value of cookie `name` in the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Lax`, `Secure` per settings.
pub fn set_cookie(
    settings: &Settings,
    name: &str,
    value: &str,
    path: &str,
    max_age_secs: Option<i64>,
) -> HeaderValue {
    let mut c = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Lax");
    if let Some(age) = max_age_secs {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if settings.secure_cookie {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A `Set-Cookie` value that removes cookie `name`.
pub fn clear_cookie(settings: &Settings, name: &str, path: &str) -> HeaderValue {
    set_cookie(settings, name, "", path, Some(0))
}

/// A random token for cookies and forms.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Compare two tokens without an early exit.
pub fn same_token(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() || a.is_empty() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A signed-in staff member: the session and the principal every API
/// function takes (its `token_id` is the session's id).
#[derive(Debug, Clone)]
pub struct Signed {
    pub principal: Principal,
    pub session: console_session::Model,
}

impl Signed {
    pub fn csrf_ok(&self, form_token: &str) -> bool {
        same_token(&self.session.csrf_token, form_token)
    }
}

fn principal_of(session: &console_session::Model) -> Result<Principal, ApiError> {
    let role: Role = session
        .role
        .parse()
        .map_err(|e: sanyu_domain::ParseError| ApiError::Internal(e.to_string()))?;
    Ok(Principal {
        token_id: session.id,
        role,
        school_id: session.school_id,
        class_id: session.class_id,
        staff_id: Some(session.staff_id),
    })
}

/// The staff member signed in on this request, if any. A session that
/// times out (idle or absolute) or whose staff member changed ends here and
/// the end is audited. A page's background refresh (htmx) does not count
/// as the person's activity.
pub async fn current(
    state: &AppState,
    headers: &HeaderMap,
    method: &Method,
    peer: &Peer,
) -> Result<Option<Signed>, ApiError> {
    let Some(token) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let background = method == Method::GET && headers.contains_key("hx-request");
    let settings = &state.console;
    match store::check_session(&state.db, &token, settings.idle, !background, Utc::now()).await? {
        SessionCheck::Valid(session) => Ok(Some(Signed {
            principal: principal_of(&session)?,
            session,
        })),
        SessionCheck::Ended { session, reason } => {
            audit::record_entry(
                state,
                sanyu_store::audit::AuditEntry {
                    actor_token_id: Some(session.id),
                    actor_role: session.role.clone(),
                    actor_staff_id: Some(session.staff_id),
                    school_id: Some(session.school_id),
                    action: "console.session_expired".into(),
                    target: format!("session:{}:{reason}", session.id),
                    source: peer.0.clone(),
                },
            )
            .await?;
            Ok(None)
        }
        SessionCheck::None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("sanyu_session_x=1; sanyu_session=abc; other=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "missing"), None);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "ab"));
        assert!(!same_token("", ""));
    }
}
