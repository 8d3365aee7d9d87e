//! Migrations m20261205_100001/100002 on a database that already holds tokens
//! and dead letters: every token still authenticates (SQLite rebuilds
//! `api_tokens`; its unique index comes back), a token without a school can
//! be stored, and dead letters get the school their old subject could name
//! unambiguously; the rest stay school-less.

use crate::common;

use chrono::Utc;
use sanyu_domain::Holder;
use sanyu_store::entities::{api_token, dead_letter};
use sanyu_store::migration::Migrator;
use sanyu_store::sea_orm::sea_query::Query;
use sanyu_store::sea_orm::{ConnectionTrait, EntityTrait};
use sanyu_store::{roster, tokens};
use sanyu_test_support::TestDb;
use sea_orm_migration::MigratorTrait;
use uuid::Uuid;

/// The migrations before m20261205_100001.
const BEFORE: u32 = 13;

async fn old_dead_letter(conn: &impl ConnectionTrait, key: &str, subject: Option<&str>) -> Uuid {
    let id = Uuid::now_v7();
    let insert = Query::insert()
        .into_table("dead_letters")
        .columns([
            "id",
            "source_key",
            "stream",
            "consumer",
            "subject",
            "reason",
            "received_at",
        ])
        .values_panic([
            id.into(),
            key.into(),
            "INTAKE".into(),
            "rules".into(),
            subject.map(str::to_owned).into(),
            "old".into(),
            Utc::now().into(),
        ])
        .to_owned();
    conn.execute(&insert).await.expect("old dead letter");
    id
}

async fn tokens_and_dead_letters_survive(db: TestDb) {
    let conn = common::migrated_up_to(&db, BEFORE).await;
    let school = sanyu_test_support::seed_school(&conn, "MIG3").await;
    let before = api_token::Entity::find()
        .all(&conn)
        .await
        .expect("tokens")
        .len();
    let named = old_dead_letter(&conn, "a", Some("sanyu.intake.report.MIG3.4")).await;
    let collided = old_dead_letter(&conn, "b", Some("sanyu.intake.report.__.4")).await;
    let none = old_dead_letter(&conn, "c", None).await;

    Migrator::up(&conn, None).await.expect("migrate");

    assert_eq!(
        api_token::Entity::find()
            .all(&conn)
            .await
            .expect("tokens")
            .len(),
        before
    );
    assert!(matches!(
        tokens::authenticate(&conn, &school.crisis_team)
            .await
            .expect("auth"),
        Some(Holder::School(_))
    ));
    let deployment = tokens::issue_deployment(&conn, None, chrono::Duration::days(1))
        .await
        .expect("a token without a school");
    assert_eq!(
        tokens::authenticate(&conn, &deployment.secret)
            .await
            .expect("auth"),
        Some(Holder::Deployment {
            token_id: deployment.id
        })
    );
    // The unique token hash still holds.
    let copy = api_token::Entity::find_by_id(deployment.id)
        .one(&conn)
        .await
        .expect("token")
        .expect("stored");
    let mut dup: api_token::ActiveModel = copy.into();
    dup.id = sanyu_store::sea_orm::ActiveValue::Set(Uuid::now_v7());
    assert!(
        api_token::Entity::insert(dup)
            .exec_without_returning(&conn)
            .await
            .is_err()
    );

    let mig3 = roster::school_by_code(&conn, "MIG3")
        .await
        .expect("school")
        .expect("MIG3");
    let school_of = |id: Uuid| {
        let conn = &conn;
        async move {
            dead_letter::Entity::find_by_id(id)
                .one(conn)
                .await
                .expect("dead letter")
                .expect("stored")
                .school_id
        }
    };
    assert_eq!(school_of(named).await, Some(mig3.id));
    assert_eq!(school_of(collided).await, None);
    assert_eq!(school_of(none).await, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_and_dead_letters_survive_the_scope_migrations_on_sqlite() {
    tokens_and_dead_letters_survive(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_and_dead_letters_survive_the_scope_migrations_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        tokens_and_dead_letters_survive(db).await;
    }
}
