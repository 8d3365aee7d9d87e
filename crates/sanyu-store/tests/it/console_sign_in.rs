//! The console's one-time sign-in links and the channel of a code, on a real
//! database: a link works once, only before its challenge expires, and
//! looking at it uses nothing up; the code and the link are one challenge;
//! a code goes by SMS only to a person with a phone while SMS is on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use chrono::{Duration, Utc};
use sanyu_store::console::{
    self, CodeAsk, CodeChannel, CodeCheck, CodeLimits, CodeRequest, CodeSend, ConsoleKey, LinkCheck,
};
use sanyu_store::sea_orm::EntityTrait;
use sanyu_store::{Db, begin_write};
use sanyu_test_support::{TestDb, seed_school};

fn key() -> ConsoleKey {
    ConsoleKey::from_data_key(&base64::engine::general_purpose::STANDARD.encode([3u8; 32])).unwrap()
}

/// Ask for a code; the browser's secret and what would be sent.
async fn ask(
    db: &Db,
    identifier: &str,
    wanted: CodeChannel,
    sms_enabled: bool,
) -> (String, Option<Box<CodeSend>>) {
    let txn = begin_write(db).await.unwrap();
    let asked = console::request_code(
        &*txn,
        &key(),
        CodeAsk {
            identifier,
            client_addr: "127.0.0.1",
            return_to: Some("/queue".into()),
            wanted,
            sms_enabled,
        },
        CodeLimits::default(),
        Utc::now(),
    )
    .await
    .unwrap();
    txn.commit().await.unwrap();
    match asked {
        CodeRequest::Issued { secret, send, .. } => (secret, send),
        CodeRequest::RateLimited => panic!("rate limited"),
    }
}

async fn use_link(db: &Db, token: &str, at: chrono::DateTime<Utc>) -> LinkCheck {
    let txn = begin_write(db).await.unwrap();
    let used = console::use_link(&*txn, &key(), token, at).await.unwrap();
    txn.commit().await.unwrap();
    used
}

fn refusal(check: &LinkCheck) -> &'static str {
    match check {
        LinkCheck::Refused { why, .. } => why,
        LinkCheck::Accepted { .. } => "accepted",
    }
}

#[tokio::test]
async fn a_sign_in_link_works_once_and_looking_at_it_uses_nothing_up_on_sqlite() {
    a_sign_in_link_works_once_and_looking_at_it_uses_nothing_up(TestDb::sqlite()).await;
}

#[tokio::test]
async fn a_sign_in_link_works_once_and_looking_at_it_uses_nothing_up_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        a_sign_in_link_works_once_and_looking_at_it_uses_nothing_up(db).await;
    }
}

async fn a_sign_in_link_works_once_and_looking_at_it_uses_nothing_up(test_db: TestDb) {
    let db = test_db.connect().await;
    let school = seed_school(&db, "LNK1").await;
    let (secret, send) = ask(&db, &school.counsellor_email, CodeChannel::Email, true).await;
    let send = send.expect("the counsellor is sent a code");
    assert_eq!(send.channel, CodeChannel::Email);
    let token = send.link_token.clone().expect("an emailed code has a link");
    let now = Utc::now();

    // A preview, twice: still good.
    for _ in 0..2 {
        assert!(console::peek_link(&db, &key(), &token, now).await.unwrap());
    }
    let LinkCheck::Accepted {
        staff, return_to, ..
    } = use_link(&db, &token, now).await
    else {
        panic!("the link signs in");
    };
    assert_eq!(staff.id, send.staff.id);
    assert_eq!(return_to.as_deref(), Some("/queue"));
    // Once only; and the code of the same challenge is used up with it.
    assert_eq!(refusal(&use_link(&db, &token, now).await), "used");
    assert!(!console::peek_link(&db, &key(), &token, now).await.unwrap());
    let txn = begin_write(&db).await.unwrap();
    let code = console::check_code(&*txn, &key(), &secret, &send.code, now)
        .await
        .unwrap();
    txn.commit().await.unwrap();
    assert!(matches!(code, CodeCheck::Used { .. }), "{code:?}");

    // A forged or mangled token is nobody's.
    let mut forged = token.clone();
    forged.replace_range(0..1, if token.starts_with('A') { "B" } else { "A" });
    for bad in [forged.as_str(), "", "short", &format!("{token}x")] {
        assert!(!console::peek_link(&db, &key(), bad, now).await.unwrap());
        assert_eq!(refusal(&use_link(&db, bad, now).await), "unknown", "{bad}");
    }

    // A new link expires with its code (10 minutes); the code of a used
    // link's challenge cannot be typed in either.
    let (_, send) = ask(&db, &school.counsellor_email, CodeChannel::Email, true).await;
    let token = send.unwrap().link_token.unwrap();
    let later = now + Duration::minutes(console::CODE_TTL_MINUTES) + Duration::seconds(1);
    assert!(
        !console::peek_link(&db, &key(), &token, later)
            .await
            .unwrap()
    );
    assert_eq!(refusal(&use_link(&db, &token, later).await), "expired");
    // Refusals use nothing up: it still works in time.
    assert!(matches!(
        use_link(&db, &token, now).await,
        LinkCheck::Accepted { .. }
    ));

    // The token is stored only as a keyed hash.
    let rows = sanyu_store::entities::console_sign_in_code::Entity::find()
        .all(&db)
        .await
        .unwrap();
    assert!(rows.iter().all(|r| {
        r.link_hash.as_deref().is_some_and(|h| !h.contains(&token)) && r.channel == "email"
    }));
}

#[tokio::test]
async fn a_code_goes_by_sms_only_to_a_phone_while_sms_is_on_and_has_no_link() {
    let test_db = TestDb::sqlite();
    let db = test_db.connect().await;
    seed_school(&db, "LNK2").await;
    // K1 has both: SMS as asked, and no link.
    let (_, send) = ask(&db, "13900000003", CodeChannel::Sms, true).await;
    let send = send.expect("K1");
    assert_eq!(send.channel, CodeChannel::Sms);
    assert!(send.link_token.is_none());
    // SMS off: email (with its link), whatever was asked.
    let (_, send) = ask(&db, "13900000003", CodeChannel::Sms, false).await;
    let send = send.expect("K1");
    assert_eq!(send.channel, CodeChannel::Email);
    assert!(send.link_token.is_some());
    // K2 has a phone and no email: SMS when it is on, nothing otherwise.
    let (_, send) = ask(&db, "13900000007", CodeChannel::Email, true).await;
    assert_eq!(send.expect("K2").channel, CodeChannel::Sms);
    let (secret, send) = ask(&db, "13900000007", CodeChannel::Email, false).await;
    assert!(send.is_none());
    // ... and that challenge signs nobody in.
    let txn = begin_write(&db).await.unwrap();
    let checked = console::check_code(&*txn, &key(), &secret, "000000", Utc::now())
        .await
        .unwrap();
    txn.commit().await.unwrap();
    assert!(matches!(checked, CodeCheck::Wrong { .. }), "{checked:?}");
    let rows = sanyu_store::entities::console_sign_in_code::Entity::find()
        .all(&db)
        .await
        .unwrap();
    assert_eq!(
        rows.iter().filter(|r| r.channel == "sms").count(),
        2,
        "the channel is on record"
    );
    assert_eq!(rows.iter().filter(|r| r.link_hash.is_some()).count(), 1);
}

async fn staff_by_phone(db: &Db, phone: &str) -> sanyu_store::entities::staff::Model {
    sanyu_store::roster::active_staff_by_phone(db, &[phone.to_owned()])
        .await
        .unwrap()
        .remove(0)
}

async fn phone_verified(db: &Db, person: &sanyu_store::entities::staff::Model) -> bool {
    sanyu_store::contacts::verified(db, &[person.id])
        .await
        .unwrap()
        .phone(person)
}

async fn email_verified(db: &Db, person: &sanyu_store::entities::staff::Model) -> bool {
    sanyu_store::contacts::verified(db, &[person.id])
        .await
        .unwrap()
        .email(person)
}

async fn check(db: &Db, secret: &str, code: &str) -> CodeCheck {
    let txn = begin_write(db).await.unwrap();
    let checked = console::check_code(&*txn, &key(), secret, code, Utc::now())
        .await
        .unwrap();
    txn.commit().await.unwrap();
    checked
}

/// Issue 16: a contact method is verified by a code sent to it and typed
/// into the console; an SMS-only colleague then counts for the ladders.
#[tokio::test]
async fn a_code_typed_in_verifies_the_address_it_went_to_and_only_while_it_is_theirs() {
    let test_db = TestDb::sqlite();
    let db = test_db.connect().await;
    seed_school(&db, "VER1").await;
    let k2 = staff_by_phone(&db, "13900000007").await;
    assert!(!phone_verified(&db, &k2).await, "phone only, unverified");

    // A wrong code verifies nothing; the right one verifies the number.
    let (secret, send) = ask(&db, "13900000007", CodeChannel::Sms, true).await;
    let send = send.expect("K2");
    assert!(matches!(
        check(&db, &secret, "000000").await,
        CodeCheck::Wrong { .. }
    ));
    assert!(!phone_verified(&db, &k2).await);
    assert!(matches!(
        check(&db, &secret, &send.code).await,
        CodeCheck::Accepted { .. }
    ));
    let k2 = staff_by_phone(&db, "13900000007").await;
    assert!(phone_verified(&db, &k2).await);

    // A new number (the roster changed it) is not verified by the old code.
    let txn = begin_write(&db).await.unwrap();
    let mut a: sanyu_store::entities::staff::ActiveModel = k2.clone().into();
    a.phone = sanyu_store::sea_orm::ActiveValue::Set(Some("13900000077".into()));
    sanyu_store::sea_orm::ActiveModelTrait::update(a, &*txn)
        .await
        .unwrap();
    txn.commit().await.unwrap();
    let moved = staff_by_phone(&db, "13900000077").await;
    assert!(!phone_verified(&db, &moved).await);
    // Nor by a code sent to the old number and used after the change.
    let (secret, send) = ask(&db, "13900000077", CodeChannel::Sms, true).await;
    let send = send.expect("K2");
    let txn = begin_write(&db).await.unwrap();
    let mut a: sanyu_store::entities::staff::ActiveModel = moved.into();
    a.phone = sanyu_store::sea_orm::ActiveValue::Set(Some("13900000078".into()));
    sanyu_store::sea_orm::ActiveModelTrait::update(a, &*txn)
        .await
        .unwrap();
    txn.commit().await.unwrap();
    assert!(matches!(
        check(&db, &secret, &send.code).await,
        CodeCheck::Accepted { .. }
    ));
    let changed = staff_by_phone(&db, "13900000078").await;
    assert!(!phone_verified(&db, &changed).await);

    // An emailed code's link verifies the email address, not the phone.
    let (_, send) = ask(&db, "counsellor@ver1.test", CodeChannel::Email, false).await;
    let send = send.expect("K1");
    let token = send.link_token.clone().expect("a link");
    assert!(matches!(
        use_link(&db, &token, Utc::now()).await,
        LinkCheck::Accepted { .. }
    ));
    let k1 = staff_by_phone(&db, "13900000003").await;
    assert!(email_verified(&db, &k1).await);
    assert!(!phone_verified(&db, &k1).await);
}
