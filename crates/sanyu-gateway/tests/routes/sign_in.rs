//! The console's sign-in by a one-time link and the choice of SMS, in-process:
//! the form offers SMS only when a provider is configured; an emailed code's
//! request carries a sealed link token; opening the link (a preview) changes
//! nothing; its button needs the form's CSRF token, signs in once and lands
//! on the page asked for; every refused link gets one neutral answer; the
//! sign-in is audited with its method.

use std::collections::HashMap;

use axum::http::Method;
use sanyu_events::{Payload, v1};
use sanyu_platform::config::Secret;
use sanyu_store::entities::{audit_record, console_sign_in_code, outbox, staff};
use sanyu_store::sea_orm::sea_query::Expr;
use sanyu_store::sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use sanyu_test_support::TestDb;

use crate::support::{Answer, App, Sch};

const KEY: &str = "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=";

/// A browser: its cookies, kept from answer to answer.
#[derive(Default)]
struct Browser {
    cookies: HashMap<String, String>,
}

impl Browser {
    fn keep(&mut self, a: &Answer) {
        for v in a.headers.get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let (k, val) = v.split(';').next().unwrap().split_once('=').unwrap();
            if val.is_empty() || v.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), val.to_owned());
            }
        }
    }

    fn cookie(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn get(&mut self, app: &App, path: &str) -> Answer {
        let a = app
            .with_token(None)
            .send(Method::GET, path, &[("cookie", &self.cookie())], vec![])
            .await;
        self.keep(&a);
        a
    }

    async fn post(&mut self, app: &App, path: &str, form: &[(&str, &str)]) -> Answer {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let a = app
            .with_token(None)
            .send(
                Method::POST,
                path,
                &[
                    ("cookie", &self.cookie()),
                    ("content-type", "application/x-www-form-urlencoded"),
                ],
                body.into_bytes(),
            )
            .await;
        self.keep(&a);
        a
    }

    fn pre(&self) -> String {
        self.cookies.get("sanyu_pre").cloned().unwrap_or_default()
    }
}

fn location(a: &Answer) -> &str {
    a.headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The app with a known data key, with or without an SMS provider.
async fn app(sms: bool) -> App {
    App::start_with(TestDb::sqlite(), |config| {
        config.security.data_key = Secret::new(KEY);
        if sms {
            config.sms.primary = Some(
                serde_json::from_value(serde_json::json!({
                    "kind": "webhook", "url": "http://127.0.0.1:9/", "secret": "s"
                }))
                .unwrap(),
            );
        }
    })
    .await
}

/// The last sign-in notification request in the outbox.
async fn last_request(app: &App) -> v1::NotificationRequested {
    let row = outbox::Entity::find()
        .filter(outbox::Column::EventId.starts_with("notify.requested:sign_in:"))
        .order_by_desc(outbox::Column::Id)
        .one(&app.db)
        .await
        .unwrap()
        .expect("a sign-in request in the outbox");
    match sanyu_events::decode(&row.payload).unwrap().payload {
        Some(Payload::NotificationRequested(req)) => req,
        other => panic!("not a notification request: {other:?}"),
    }
}

fn open(sealed: &str) -> String {
    let sealer = sanyu_store::crypto::Sealer::from_base64(KEY).unwrap();
    sanyu_store::console::open_code(&sealer, sealed).unwrap()
}

async fn ask(app: &App, b: &mut Browser, identifier: &str, channel: &str, next: &str) {
    let form = b.get(app, &format!("/sign-in?next={next}")).await;
    assert_eq!(form.status(), 200);
    let pre = b.pre();
    let asked = b
        .post(
            app,
            "/sign-in",
            &[
                ("identifier", identifier),
                ("channel", channel),
                ("next", next),
                ("pre", &pre),
            ],
        )
        .await;
    assert_eq!(
        (asked.status(), location(&asked)),
        (303, "/sign-in/code"),
        "{}",
        asked.text()
    );
}

async fn used(app: &App) -> usize {
    console_sign_in_code::Entity::find()
        .filter(console_sign_in_code::Column::UsedAt.is_not_null())
        .all(&app.db)
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn a_sign_in_link_previewed_changes_nothing_and_its_button_signs_in_once() {
    let app = app(false).await;
    let email = app.a.counsellor_email.clone();
    let mut asker = Browser::default();
    let form = asker.get(&app, "/sign-in").await;
    assert!(
        !form.text().contains("name=\"channel\""),
        "no SMS choice without a provider"
    );
    ask(&app, &mut asker, &email, "sms", "/queue").await;
    let req = last_request(&app).await;
    assert_eq!(req.channel, v1::Channel::Email as i32, "no provider: email");
    assert!(!req.sign_in_link.is_empty(), "an emailed code has a link");
    let token = open(&req.sign_in_link);
    assert_eq!(token.len(), 43);
    let link = format!("/sign-in/link/{token}");

    // The mail app's browser (no cookies of the asker's) and a chat app's
    // preview: GETs change nothing.
    let mut phone = Browser::default();
    let mut preview = Browser::default();
    for b in [&mut preview, &mut phone] {
        let page = b.get(&app, &link).await;
        assert_eq!(page.status(), 200, "{}", page.text());
        assert!(page.text().contains(&format!("action=\"{link}\"")));
        assert!(!b.cookies.contains_key("sanyu_session"));
    }
    assert_eq!(
        preview.get(&app, &format!("{link}?lang=en")).await.status(),
        200
    );
    assert_eq!(used(&app).await, 0, "a preview uses nothing up");

    // The button without the form's CSRF token, or with another: refused.
    assert_eq!(phone.post(&app, &link, &[]).await.status(), 403);
    assert_eq!(
        phone
            .post(
                &app,
                &link,
                &[("pre", "forged-forged-forged-forged-forged")]
            )
            .await
            .status(),
        403
    );
    assert_eq!(used(&app).await, 0);

    // With it: signed in, on to the page asked for.
    let pre = phone.pre();
    let signed_in = phone.post(&app, &link, &[("pre", &pre)]).await;
    assert_eq!(
        (signed_in.status(), location(&signed_in)),
        (303, "/queue"),
        "{}",
        signed_in.text()
    );
    assert!(phone.cookies.contains_key("sanyu_session"));
    assert_eq!(phone.get(&app, "/queue").await.status(), 200);

    // Once: the same link again, a GET of it, and a forged one answer alike.
    let mut again = Browser::default();
    again.get(&app, "/sign-in").await;
    let pre = again.pre();
    let reused = again.post(&app, &link, &[("pre", &pre)]).await;
    let forged = format!("/sign-in/link/{}", "A".repeat(43));
    let forged_post = again.post(&app, &forged, &[("pre", &pre)]).await;
    let looked = again.get(&app, &link).await;
    for a in [&reused, &forged_post, &looked] {
        assert_eq!(a.status(), 410);
        assert!(
            a.text().contains("此登录链接无效、已过期或已使用"),
            "{}",
            a.text()
        );
    }
    assert_eq!(reused.text(), forged_post.text());
    assert!(!again.cookies.contains_key("sanyu_session"));
    // The code of the used challenge is used up too.
    let code = open(&req.sign_in_code);
    let pre = asker.pre();
    let typed = asker
        .post(&app, "/sign-in/code", &[("code", &code), ("pre", &pre)])
        .await;
    assert_eq!(typed.status(), 401);
    assert!(typed.text().contains("已经使用过"), "{}", typed.text());

    // Audited with the method, and without the token.
    let audit = audit_record::Entity::find().all(&app.db).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.action == "console.sign_in" && a.target.ends_with(":email_link")),
        "{audit:?}"
    );
    assert!(
        audit
            .iter()
            .filter(|a| a.action == "console.sign_in_failed")
            .any(|a| a.target.ends_with(":link_used"))
    );
    assert!(audit.iter().all(|a| !a.target.contains(&token)));
}

#[tokio::test]
async fn with_an_sms_provider_a_code_goes_by_sms_when_chosen_or_when_there_is_no_email() {
    let app = app(true).await;
    let mut b = Browser::default();
    let form = b.get(&app, "/sign-in").await;
    assert!(form.text().contains("name=\"channel\" value=\"sms\""));
    let email = app.a.counsellor_email.clone();
    ask(&app, &mut b, &email, "sms", "/").await;
    let req = last_request(&app).await;
    assert_eq!(req.channel, v1::Channel::Sms as i32);
    assert!(req.sign_in_link.is_empty(), "no link in an SMS");
    assert_eq!(open(&req.sign_in_code).len(), 6);
    // The right code from the SMS signs in, audited as an SMS code.
    let code = open(&req.sign_in_code);
    let pre = b.pre();
    let signed_in = b
        .post(&app, "/sign-in/code", &[("code", &code), ("pre", &pre)])
        .await;
    assert_eq!(signed_in.status(), 303, "{}", signed_in.text());
    let audit = audit_record::Entity::find().all(&app.db).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.action == "console.sign_in" && a.target.ends_with(":sms_code"))
    );

    // Email chosen: email with its link.
    let mut b = Browser::default();
    ask(&app, &mut b, &email, "email", "/").await;
    let req = last_request(&app).await;
    assert_eq!(req.channel, v1::Channel::Email as i32);
    assert!(!req.sign_in_link.is_empty());

    // K2 has a phone and no email: SMS, whatever was chosen. The answer is
    // the same page as for nobody. (The seeded schools share phone numbers:
    // K2 of school A gets one of its own.)
    let k2 = app.staff_id(Sch::A, "K2").await;
    staff::Entity::update_many()
        .col_expr(staff::Column::Phone, Expr::value("13900009999"))
        .filter(staff::Column::Id.eq(k2))
        .exec(&app.db)
        .await
        .unwrap();
    let mut b = Browser::default();
    ask(&app, &mut b, "13900009999", "email", "/").await;
    let req = last_request(&app).await;
    assert_eq!(req.channel, v1::Channel::Sms as i32);
    assert_eq!(req.recipient_staff_id, k2.to_string());
    let k2 = b.get(&app, "/sign-in/code").await;
    let mut nobody = Browser::default();
    ask(&app, &mut nobody, "13999999999", "sms", "/").await;
    let none = nobody.get(&app, "/sign-in/code").await;
    assert_eq!(k2.status(), none.status());
    assert_eq!(
        k2.text().replace(&b.pre(), ""),
        none.text().replace(&nobody.pre(), "")
    );
}
