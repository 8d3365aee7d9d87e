//! Rendering: the templates (compiled into the binary, HTML auto-escaped),
//! the common context of every page, redirects and error pages.

use std::sync::OnceLock;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minijinja::{Environment, Value, context};

use super::i18n::{Lang, catalogue};
use crate::error::ApiError;

const TEMPLATES: &[(&str, &str)] = &[
    ("layout.html", include_str!("templates/layout.html")),
    ("sign_in.html", include_str!("templates/sign_in.html")),
    ("code.html", include_str!("templates/code.html")),
    ("link.html", include_str!("templates/link.html")),
    ("ack.html", include_str!("templates/ack.html")),
    ("queue.html", include_str!("templates/queue.html")),
    ("case.html", include_str!("templates/case.html")),
    ("message.html", include_str!("templates/message.html")),
    ("archive.html", include_str!("templates/archive.html")),
    ("calls.html", include_str!("templates/calls.html")),
    ("call.html", include_str!("templates/call.html")),
    (
        "dead_letters.html",
        include_str!("templates/dead_letters.html"),
    ),
    (
        "key_population.html",
        include_str!("templates/key_population.html"),
    ),
    ("screening.html", include_str!("templates/screening.html")),
    ("duty.html", include_str!("templates/duty.html")),
    ("me.html", include_str!("templates/me.html")),
    (
        "screening_import.html",
        include_str!("templates/screening_import.html"),
    ),
    (
        "screening_progress.html",
        include_str!("templates/screening_progress.html"),
    ),
];

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // `.html` templates escape every value (the default callback).
        for (name, source) in TEMPLATES {
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(template = name, error = %e, "console template does not parse");
            }
        }
        env.add_filter("dt", format_time);
        env
    })
}

/// `{{ value|dt(tz) }}`: an RFC 3339 time as `YYYY-MM-DD HH:MM` in the zone.
fn format_time(value: Option<String>, tz: Option<String>) -> String {
    let Some(value) = value else {
        return String::new();
    };
    let zone: chrono_tz::Tz = tz
        .as_deref()
        .and_then(|t| t.parse().ok())
        .unwrap_or(chrono_tz::Asia::Shanghai);
    chrono::DateTime::parse_from_rfc3339(&value)
        .map(|t| t.with_timezone(&zone).format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or(value)
}

/// A page: the template `name` with the common context (strings, language)
/// and the page's own.
pub fn page(name: &str, lang: Lang, status: StatusCode, ctx: Value) -> Response {
    let other = match lang {
        Lang::Zh => Lang::En,
        Lang::En => Lang::Zh,
    };
    let full = context! {
        t => Value::from(minijinja::value::Serde(catalogue(lang))),
        lang => lang.code(),
        other_lang => other.short(),
        htmx => super::HTMX_FILE,
        ..ctx
    };
    match env()
        .get_template(name)
        .and_then(|template| template.render(full))
    {
        Ok(html) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            html,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %e, "console template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// A message page (errors, notices) with a link back.
pub fn message(lang: Lang, status: StatusCode, title: &str, text: &str) -> Response {
    let t = catalogue(lang);
    page(
        "message.html",
        lang,
        status,
        context! {
            title => t.get(title).copied().unwrap_or(title),
            text => t.get(text).copied().unwrap_or(text),
        },
    )
}

/// A form whose CSRF token is not the session's: refused, 403.
pub fn csrf_refused(lang: Lang) -> Response {
    message(lang, StatusCode::FORBIDDEN, "error_title", "csrf_failed")
}

/// The page for an error of the API's functions. Not found and out of scope
/// are one page (the API already answers both as 404).
pub fn error_page(lang: Lang, err: ApiError) -> Response {
    match err {
        ApiError::NotFound(what) => message(
            lang,
            StatusCode::NOT_FOUND,
            "not_found_title",
            match what {
                "student" => "not_found_student_text",
                "case" => "not_found_text",
                _ => "not_found_other_text",
            },
        ),
        ApiError::Forbidden(_) | ApiError::Unauthorized => message(
            lang,
            StatusCode::FORBIDDEN,
            "forbidden_title",
            "forbidden_text",
        ),
        ApiError::Unavailable(_) => message(
            lang,
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable_title",
            "unavailable_text",
        ),
        ApiError::Internal(detail) => {
            tracing::error!(detail, "console: internal error");
            message(
                lang,
                StatusCode::INTERNAL_SERVER_ERROR,
                "error_title",
                "error_text",
            )
        }
        other => {
            let (status, _) = other.status_and_code();
            message(lang, status, "error_title", "error_text")
        }
    }
}

/// `303 See Other` to a path of this console.
pub fn see_other(to: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(
            header::LOCATION,
            HeaderValue::from_str(to).unwrap_or_else(|_| HeaderValue::from_static("/")),
        )],
    )
        .into_response()
}

/// What every signed-in page's layout needs, in one place: the CSRF token of
/// its forms, the role in words, the time zone, and which pages the nav links
/// to (only those the role may open). Merged into a page's context with
/// `..chrome(…)`.
pub fn chrome(state: &crate::AppState, lang: Lang, signed: &super::session::Signed) -> Value {
    context! {
        kp => super::pages::may_key_population(signed),
        dl => super::records::may_dead_letters(signed),
        hl => super::calls::may_calls(signed),
        sc => super::screening::may_screening(signed),
        du => super::duty::may_duty(signed),
        csrf => signed.session.csrf_token.clone(),
        role => super::i18n::t(lang, &format!("role_{}", signed.session.role)),
        tz => state.console.tz.name(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        for (name, _) in TEMPLATES {
            assert!(env().get_template(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn the_case_page_renders_with_every_form_and_the_ladder_either_side() {
        for ladder_state in ["running", "stopped"] {
            let case = serde_json::json!({
                "id": "01934b8e-8f4e-7c3a-9d1b-2f3c4d5e6f70", "reference": "C-1",
                "level": "high", "status": "in_progress", "subject": "student",
                "opened_at": "2026-12-05T01:02:03Z", "ladder_state": ladder_state,
                "ladder": {"first": ["counsellor"], "rungs": [{"after_secs": 600, "roles": ["crisis_team"]}], "repeat": 2},
                "signals": [], "notifications": [], "timeline": [{"action": "note", "actor_role": "counsellor", "at": "2026-12-05T01:02:03Z", "text": "<b>x</b>"}],
                "referrals": [{"id": "r", "institution": "i", "referred_on": "2026-12-01", "receipt_confirmed": false}],
                "follow_ups": [{"id": "f", "due_at": "2026-12-05T01:02:03Z"}],
            });
            let offer = serde_json::json!({"assign": true, "take": true, "record": true,
                "contact": true, "refer": true, "follow_up": true, "level": true,
                "close": true, "reopen": true, "link_student": true});
            let r = page(
                "case.html",
                Lang::Zh,
                StatusCode::OK,
                context! {
                    case => Value::from(minijinja::value::Serde(&case)),
                    offer => Value::from(minijinja::value::Serde(&offer)),
                    kind => "casework",
                    any_form => true,
                    case_id => "c",
                    csrf => "t",
                    levels => ["high"],
                    close_outcomes => ["resolved"],
                },
            );
            assert_eq!(r.status(), StatusCode::OK, "{ladder_state}");
        }
    }

    #[test]
    fn times_show_in_the_schools_zone() {
        assert_eq!(
            format_time(
                Some("2026-12-05T01:02:03Z".into()),
                Some("Asia/Shanghai".into())
            ),
            "2026-12-05 09:02"
        );
    }
}
