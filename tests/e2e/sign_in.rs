//! Signing in to the console without typing an emailed code, across the real
//! binaries:
//!
//! - by SMS: a counsellor chooses SMS on the form; the code goes through the
//!   notifier to the SMS provider (the signed webhook's stand-in, which
//!   checks the signature), carries nothing but the code, and signs in once;
//! - by the one-time link in the sign-in email (real SMTP): opening it twice
//!   (a chat app's preview, then the person) changes nothing, its button
//!   signs in and lands on the case of the alert link, and the link then
//!   answers one neutral page; in chromium when it is on PATH, with axe-core
//!   and screenshots of the link's page at 375 px and 1280 px.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use sanyu_e2e::Stack;
use sanyu_e2e::support::{ReceivedMail, TestDb, eventually};
use sanyu_sms::stand_in::{StandIn, StandInKind};
use sea_orm::EntityTrait;

use crate::console::{self, Agent};

const WEBHOOK_SECRET: &str = "whsec-e2e-sign-in";
const COUNSELLOR_PHONE: &str = "13900000003";

/// A configuration file with the webhook stand-in as the SMS provider.
struct SmsConfig {
    path: PathBuf,
}

impl SmsConfig {
    fn write(stand_in: &StandIn) -> Self {
        let path =
            std::env::temp_dir().join(format!("sanyu-sign-in-{}.toml", uuid::Uuid::now_v7()));
        let toml = format!(
            r#"
[sms.primary]
kind = "webhook"
url = "{url}"
secret = "{WEBHOOK_SECRET}"
http = {{ connect_timeout_ms = 1000, request_timeout_ms = 2000 }}
"#,
            url = stand_in.base_url(),
        );
        std::fs::write(&path, toml).unwrap();
        Self { path }
    }
}

impl Drop for SmsConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Ask for a code for `identifier` by `channel`, going on to `next`.
async fn ask(agent: &mut Agent, identifier: &str, channel: &str, next: &str) {
    let form = agent.get(&format!("/sign-in?next={next}")).await;
    assert_eq!(form.status, 200, "{}", form.body);
    let pre = form.field("pre");
    let asked = agent
        .post(
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
        (asked.status, asked.location()),
        (303, "/sign-in/code".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_counsellor_signs_in_with_a_code_sent_by_sms_through_the_provider() {
    let stand_in = StandIn::start(StandInKind::Webhook, "", WEBHOOK_SECRET)
        .await
        .unwrap();
    let config = SmsConfig::write(&stand_in);
    let mut stack = Stack::new(TestDb::sqlite()).await;
    let mut s = console::settings(&stack.base_url(), 3600);
    s.push(("SANYU_CONFIG", config.path.display().to_string()));
    stack.start_gateway_with(&s).await;
    stack.start_notifier_with(&s);
    let email = stack.school.counsellor_email.clone();

    let mut agent = Agent::new(&stack.base_url());
    let form = agent.get("/sign-in").await;
    assert!(
        form.body.contains("name=\"channel\" value=\"sms\""),
        "{}",
        form.body
    );
    ask(&mut agent, &email, "sms", "/queue").await;

    // The SMS the provider took: the code, as the template's one parameter.
    let sms = eventually(Duration::from_secs(30), "the sign-in SMS", || async {
        stand_in.received().into_iter().next()
    })
    .await;
    assert!(sms.phone.ends_with(COUNSELLOR_PHONE), "{}", sms.phone);
    assert_eq!(sms.template, "sign_in.zh-CN");
    let code = sms
        .params
        .iter()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.clone())
        .expect("the code parameter");
    assert_eq!(code.len(), 6);
    assert!(code.chars().all(|c| c.is_ascii_digit()));
    let text = sms.text.clone().unwrap_or_default();
    assert!(text.contains(&code), "{text}");
    // Nothing about a student, a case, a school or a link.
    for word in ["Student", "个案", "C-", "http", "SCH1", &stack.school.code] {
        assert!(!text.contains(word), "{word} in {text}");
    }
    assert_eq!(stand_in.received().len(), 1, "one SMS");

    let signed_in = agent.type_code(&code).await;
    assert_eq!(
        (signed_in.status, signed_in.location()),
        (303, "/queue".into()),
        "{}",
        signed_in.body
    );
    assert_eq!(agent.get("/queue").await.status, 200);
    assert!(!agent.cookies.contains_key("sanyu_challenge"), "cleared");
    // No email carried the code.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(console::to(&stack.smtp.received(), &email).is_empty());
    // The delivery log has the SMS, sent.
    let deliveries = sanyu_store::entities::delivery::Entity::find()
        .all(&stack.conn)
        .await
        .unwrap();
    assert!(
        deliveries
            .iter()
            .any(|d| d.notification_key.starts_with("sign_in:")
                && d.channel == "sms"
                && d.status == "sent"),
        "{deliveries:?}"
    );
}

/// The one-time link of the `n`-th sign-in email (1-based) to `who`, as a path.
async fn nth_link(stack: &Stack, who: &str, n: usize) -> String {
    eventually(
        Duration::from_secs(30),
        "a sign-in email with a link",
        || async {
            let mails: Vec<ReceivedMail> = console::to(&stack.smtp.received(), who)
                .into_iter()
                .filter(|m| m.subject().contains(console::CODE_SUBJECT))
                .collect();
            let text = mails.get(n - 1)?.text();
            let at = text.find("/sign-in/link/")?;
            let link: String = text[at..]
                .chars()
                .take_while(|c| !c.is_whitespace())
                .collect();
            Some(link)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_counsellor_signs_in_with_the_emailed_link_and_lands_on_the_case() {
    let stack = console_stack().await;
    let case_id = console::open_high_case(&stack).await;
    let email = stack.school.counsellor_email.clone();
    let case_path = format!("/cases/{case_id}");

    // The alert link, not signed in: on to sign-in, and a code by email.
    let mut asker = Agent::new(&stack.base_url());
    ask(&mut asker, &email, "email", &case_path).await;
    let link = nth_link(&stack, &email, 1).await;
    let mail = console::to(&stack.smtp.received(), &email)
        .into_iter()
        .find(|m| m.subject().contains(console::CODE_SUBJECT))
        .unwrap();
    assert!(
        mail.text().contains(&format!("{}{link}", stack.base_url())),
        "the link is absolute: {}",
        mail.text()
    );
    // The same email carries the code too.
    assert!(console::nth_code(&stack, &email, 1).await.len() == 6);

    // A chat app's preview, then the person's phone: GETs use nothing up.
    let mut preview = Agent::new(&stack.base_url());
    let mut phone = Agent::new(&stack.base_url());
    for agent in [&mut preview, &mut phone] {
        let page = agent.get(&link).await;
        assert_eq!(page.status, 200, "{}", page.body);
        console::assert_console_headers(&page);
        assert!(!agent.cookies.contains_key("sanyu_session"));
    }
    // The button: signed in, on the case of the alert link.
    let pre = phone.cookies.get("sanyu_pre").cloned().unwrap_or_default();
    let signed_in = phone.post(&link, &[("pre", &pre)]).await;
    assert_eq!(
        (signed_in.status, signed_in.location()),
        (303, case_path.clone()),
        "{}",
        signed_in.body
    );
    let case = phone.get(&case_path).await;
    assert_eq!(case.status, 200);

    // Used: the link answers one neutral page, the preview's button too.
    let pre = preview
        .cookies
        .get("sanyu_pre")
        .cloned()
        .unwrap_or_default();
    let late = preview.post(&link, &[("pre", &pre)]).await;
    assert_eq!(late.status, 410);
    assert!(
        late.body.contains("此登录链接无效、已过期或已使用"),
        "{}",
        late.body
    );
    assert!(!preview.cookies.contains_key("sanyu_session"));
    assert_eq!(preview.get(&link).await.status, 410);

    // Audited with the method; no token in the audit log.
    let token = link.trim_start_matches("/sign-in/link/");
    let audit = sanyu_store::entities::audit_record::Entity::find()
        .all(&stack.conn)
        .await
        .unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.action == "console.sign_in" && a.target.ends_with(":email_link"))
    );
    assert!(audit.iter().all(|a| !a.target.contains(token)));

    in_a_browser(&stack, &email, &case_path).await;
}

async fn console_stack() -> Stack {
    let mut stack = Stack::new(TestDb::sqlite()).await;
    let s = console::settings(&stack.base_url(), 3600);
    stack.start_gateway_with(&s).await;
    stack.start_rules(&s);
    stack.start_notifier_with(&s);
    stack.start_scheduler(&s);
    stack
}

/// The link's page in chromium: axe-core, screenshots, its button; then the
/// used link's page.
async fn in_a_browser(stack: &Stack, email: &str, case_path: &str) {
    use fantoccini::Locator;
    let Some(driver) = console::start_driver().await else {
        return;
    };
    let c = console::browser(&driver).await;
    c.goto(&format!("{}{case_path}", stack.base_url()))
        .await
        .unwrap();
    console::wait_for_path(&c, "/sign-in").await;
    c.find(Locator::Id("identifier"))
        .await
        .unwrap()
        .send_keys(email)
        .await
        .unwrap();
    c.find(Locator::Css("form.stack button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    console::wait_for_path(&c, "/sign-in/code").await;
    let link = nth_link(stack, email, 2).await;
    // Opened from the mail app: a browser without this one's cookies.
    c.delete_all_cookies().await.unwrap();
    c.goto(&format!("{}{link}", stack.base_url()))
        .await
        .unwrap();
    console::wait_for_path(&c, "/sign-in/link/").await;
    console::shoot(&c, "sign-in-link").await;
    c.find(Locator::Css("form.stack button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    console::wait_for_path(&c, case_path).await;
    c.goto(&format!("{}{link}", stack.base_url()))
        .await
        .unwrap();
    console::wait_for_path(&c, "/sign-in/link/").await;
    let main = c
        .find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(main.contains("此登录链接无效、已过期或已使用"), "{main}");
    console::shoot(&c, "sign-in-link-used").await;
    c.close().await.unwrap();
}

/// The first SMS to `phone` whose text names `reference`.
fn sms_naming(stand_in: &StandIn, phone: &str, reference: &str) -> bool {
    stand_in
        .received()
        .iter()
        .any(|m| m.phone.ends_with(phone) && m.text.as_deref().unwrap_or("").contains(reference))
}

/// Issue 16, reachability: counsellor K2 has a mobile number and no email
/// address. Unverified, the number counts for nothing (a typo in the roster
/// must not make a rung look staffed); once K2 signs in to the console with
/// a code sent to it by SMS, the number is verified and K2 is told of the
/// next critical case by SMS — with no email tried and failed.
#[tokio::test(flavor = "multi_thread")]
async fn an_sms_only_counsellor_is_reached_once_a_code_sent_to_their_number_is_typed_in() {
    const K2_PHONE: &str = "13900000007";
    let stand_in = StandIn::start(StandInKind::Webhook, "", WEBHOOK_SECRET)
        .await
        .unwrap();
    let config = SmsConfig::write(&stand_in);
    let mut stack = Stack::new(TestDb::sqlite()).await;
    // The other school's K2 has the same number in the fixtures: a number
    // names one person to sign in with, so give it another one.
    {
        use sea_orm::{ColumnTrait, QueryFilter, sea_query::Expr};
        let other = sanyu_store::roster::school_by_code(&stack.conn, "SCH2")
            .await
            .unwrap()
            .unwrap();
        sanyu_store::entities::staff::Entity::update_many()
            .col_expr(
                sanyu_store::entities::staff::Column::Phone,
                Expr::value("13900000017"),
            )
            .filter(sanyu_store::entities::staff::Column::SchoolId.eq(other.id))
            .filter(sanyu_store::entities::staff::Column::StaffNo.eq("K2"))
            .exec(&stack.conn)
            .await
            .unwrap();
    }
    let mut s = console::settings(&stack.base_url(), 3600);
    s.push(("SANYU_CONFIG", config.path.display().to_string()));
    stack.start_gateway_with(&s).await;
    stack.start_rules(&[]);
    stack.start_notifier_with(&s);

    let report = |student: &str| Stack::report_body(student, "critical", "a narrative");
    let r = stack
        .post_report(&stack.school.teacher_c1, &report("S1"))
        .await;
    assert_eq!(r.status(), 202);
    let first = stack.wait_for_cases(1).await;
    let first_ref = first[0]["reference"].as_str().unwrap().to_owned();
    eventually(
        Duration::from_secs(30),
        "K1's SMS of the first case",
        || async { sms_naming(&stand_in, COUNSELLOR_PHONE, &first_ref).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !sms_naming(&stand_in, K2_PHONE, &first_ref),
        "an unverified number alone is not told"
    );

    // K2 signs in with a code sent by SMS: the number is verified.
    let mut agent = Agent::new(&stack.base_url());
    ask(&mut agent, K2_PHONE, "sms", "/queue").await;
    let code = eventually(Duration::from_secs(30), "K2's sign-in SMS", || async {
        stand_in
            .received()
            .into_iter()
            .find(|m| m.phone.ends_with(K2_PHONE) && m.template.starts_with("sign_in"))
            .and_then(|m| {
                m.params
                    .iter()
                    .find(|(k, _)| k == "code")
                    .map(|(_, v)| v.clone())
            })
    })
    .await;
    let signed_in = agent.type_code(&code).await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);

    let r = stack
        .post_report(&stack.school.teacher_c1, &report("S2"))
        .await;
    assert_eq!(r.status(), 202);
    let cases = stack.wait_for_cases(2).await;
    let second = cases
        .iter()
        .find(|c| c["reference"] != first_ref.as_str())
        .unwrap();
    let second_ref = second["reference"].as_str().unwrap().to_owned();
    let second_id = second["id"].as_str().unwrap().to_owned();
    eventually(
        Duration::from_secs(30),
        "K2's SMS of the second case",
        || async { sms_naming(&stand_in, K2_PHONE, &second_ref).then_some(()) },
    )
    .await;
    // On record: K2's SMS sent, and no email tried for K2 (none to fail).
    let k2 = sanyu_store::roster::active_staff_by_phone(&stack.conn, &[K2_PHONE.to_owned()])
        .await
        .unwrap()
        .remove(0);
    let rows = eventually(Duration::from_secs(30), "K2's delivery rows", || async {
        let rows: Vec<_> = sanyu_store::deliveries::for_case(
            &stack.conn,
            uuid::Uuid::parse_str(&second_id).unwrap(),
        )
        .await
        .ok()?
        .into_iter()
        .filter(|d| d.recipient_staff_id == k2.id)
        .collect();
        rows.iter()
            .any(|d| d.channel == "sms" && d.status == "sent")
            .then_some(rows)
    })
    .await;
    assert!(
        rows.iter().all(|d| d.channel != "email"),
        "no email for a person without an address: {rows:?}"
    );
}

/// Issue 16, per-person preferences: an `elevated` case is emailed by
/// default (no SMS). Counsellor K1 opens 我的通知, sees what each level
/// requires (fixed) and their email verified by the sign-in, adds SMS for
/// `elevated`; the next elevated case reaches K1 by SMS as well. Unticking
/// everything never drops a level's own channels.
#[tokio::test(flavor = "multi_thread")]
async fn a_counsellor_adds_sms_for_elevated_cases_and_cannot_drop_below_the_policy() {
    let stand_in = StandIn::start(StandInKind::Webhook, "", WEBHOOK_SECRET)
        .await
        .unwrap();
    let config = SmsConfig::write(&stand_in);
    let mut stack = Stack::new(TestDb::sqlite()).await;
    let mut s = console::settings(&stack.base_url(), 3600);
    s.push(("SANYU_CONFIG", config.path.display().to_string()));
    s.push(("SANYU_NOTIFY__QUIET_HOURS__ENABLED", "false".to_owned()));
    stack.start_gateway_with(&s).await;
    stack.start_rules(&[]);
    stack.start_notifier_with(&s);
    let email = stack.school.counsellor_email.clone();
    let mut agent = console::signed_in_agent(&stack, &email, 1).await;

    let page = agent.get("/me").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let boxes = |body: &str, name: &str| {
        let at = body.find(&format!("name=\"{name}\"")).expect(name);
        let tag_end = body[at..].find('>').unwrap();
        body[at..at + tag_end].to_owned()
    };
    assert!(boxes(&page.body, "critical_sms").contains("disabled"));
    assert!(!boxes(&page.body, "elevated_sms").contains("checked"));
    assert!(boxes(&page.body, "elevated_email").contains("disabled"));
    assert!(
        page.body.contains("已验证"),
        "the emailed code verified the address"
    );

    let report = |student: &str| Stack::report_body(student, "elevated", "a narrative");
    let r = stack
        .post_report(&stack.school.teacher_c1, &report("S1"))
        .await;
    assert_eq!(r.status(), 202);
    let first = stack.wait_for_cases(1).await;
    let first_ref = first[0]["reference"].as_str().unwrap().to_owned();
    eventually(
        Duration::from_secs(30),
        "K1's email of the first case",
        || async {
            console::to(&stack.smtp.received(), &email)
                .iter()
                .any(|m| m.subject().contains(&first_ref))
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !sms_naming(&stand_in, COUNSELLOR_PHONE, &first_ref),
        "an elevated case goes by email only by default"
    );

    // Add SMS for elevated (and tick nothing else).
    let csrf = page.field("csrf");
    let saved = agent
        .post(
            "/me/notifications",
            &[("csrf", csrf.as_str()), ("elevated_sms", "on")],
        )
        .await;
    assert_eq!(
        (saved.status, saved.location()),
        (303, "/me?done=saved".into())
    );
    let page = agent.get("/me?done=saved").await;
    assert!(boxes(&page.body, "elevated_sms").contains("checked"));
    assert!(
        boxes(&page.body, "critical_sms").contains("checked"),
        "a level's own channels stay"
    );

    let r = stack
        .post_report(&stack.school.teacher_c1, &report("S2"))
        .await;
    assert_eq!(r.status(), 202);
    let cases = stack.wait_for_cases(2).await;
    let second_ref = cases
        .iter()
        .map(|c| c["reference"].as_str().unwrap().to_owned())
        .find(|r| *r != first_ref)
        .unwrap();
    eventually(
        Duration::from_secs(30),
        "K1's SMS of the second case",
        || async { sms_naming(&stand_in, COUNSELLOR_PHONE, &second_ref).then_some(()) },
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "K1's email of the second case",
        || async {
            console::to(&stack.smtp.received(), &email)
                .iter()
                .any(|m| m.subject().contains(&second_ref))
                .then_some(())
        },
    )
    .await;
}
