//! 我的通知 (`/me`, issue 16): a staff member's own contact methods — their
//! mobile number and email address as the roster has them, and whether a
//! code sent to each was typed in (verified) — and the channels they add,
//! per case level, to those the level requires (`notify.channels`). A
//! person can add channels, never drop below the level's: the level's are
//! shown ticked and fixed, and only additions are stored
//! (`sanyu_store::preferences`). The notifier reads them for every notice
//! about a case.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Query, State};
use axum::response::Response;
use minijinja::{Value, context};
use sanyu_platform::config::NotifyChannel;
use serde::{Deserialize, Serialize};

use super::page::{Page, Post};
use super::view;
use crate::AppState;
use crate::error::ApiError;

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    done: Option<String>,
}

/// One channel of one level on the page.
#[derive(Debug, Serialize)]
struct Choice {
    channel: &'static str,
    /// The level requires it: ticked, fixed.
    required: bool,
    /// The person added it.
    added: bool,
}

#[derive(Debug, Serialize)]
struct LevelRow {
    level: &'static str,
    choices: Vec<Choice>,
}

/// `GET /me`.
pub async fn page(
    State(state): State<AppState>,
    page: Page,
    Query(q): Query<PageQuery>,
) -> Response {
    let staff_id = page.signed.session.staff_id;
    let read = async {
        let person = sanyu_store::roster::staff_by_id(&state.db, staff_id)
            .await?
            .ok_or(ApiError::NotFound("staff"))?;
        let verified = sanyu_store::contacts::verified(&state.db, &[staff_id]).await?;
        let added = sanyu_store::preferences::of(&state.db, staff_id).await?;
        Ok::<_, ApiError>((person, verified, added))
    };
    let (person, verified, added) = match read.await {
        Ok(v) => v,
        Err(e) => return page.error(e),
    };
    let levels: Vec<LevelRow> = sanyu_store::preferences::LEVELS
        .into_iter()
        .map(|level| {
            let required = state.console.channels.of(level);
            let mine = added.get(level).cloned().unwrap_or_default();
            LevelRow {
                level,
                choices: state
                    .console
                    .available
                    .iter()
                    .map(|c| Choice {
                        channel: c.as_str(),
                        required: required.contains(c),
                        added: mine.iter().any(|m| m == c.as_str()),
                    })
                    .collect(),
            }
        })
        .collect();
    let filled = |v: &Option<String>| {
        v.as_deref()
            .filter(|v| !v.trim().is_empty())
            .map(str::to_owned)
    };
    page.render(
        &state,
        "me.html",
        context! {
            name => person.name.clone(),
            phone => filled(&person.phone),
            email => filled(&person.email),
            phone_verified => verified.phone(&person),
            email_verified => verified.email(&person),
            levels => Value::from(minijinja::value::Serde(&levels)),
            notice => (q.done.as_deref() == Some("saved")).then_some("me_saved"),
        },
    )
}

/// `POST /me/notifications`: the ticked boxes (`<level>_<channel>=on`) and
/// the session's CSRF token. Only additions to a level's channels, on
/// channels the deployment has, are kept.
pub async fn save(
    State(state): State<AppState>,
    post: Post,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let csrf = f.get("csrf").cloned().unwrap_or_default();
    let page = match post.check("/me", &csrf) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let staff_id = page.signed.session.staff_id;
    let write = async {
        let now = chrono::Utc::now();
        let txn = sanyu_store::begin_write(&state.db).await?;
        for level in sanyu_store::preferences::LEVELS {
            let required = state.console.channels.of(level);
            let added: Vec<&str> = NotifyChannel::ALL
                .iter()
                .filter(|c| state.console.available.contains(c) && !required.contains(c))
                .filter(|c| f.contains_key(&format!("{level}_{}", c.as_str())))
                .map(|c| c.as_str())
                .collect();
            sanyu_store::preferences::set(&*txn, staff_id, level, &added, now).await?;
        }
        let entry = crate::audit::entry(
            &page.signed.principal,
            &page.peer,
            "staff.notification_preferences",
            format!("staff:{staff_id}"),
        );
        crate::audit::record_in(&*txn, &state, entry).await?;
        txn.commit().await?;
        Ok::<(), ApiError>(())
    };
    match write.await {
        Ok(()) => view::see_other("/me?done=saved"),
        Err(e) => page.error(e),
    }
}
