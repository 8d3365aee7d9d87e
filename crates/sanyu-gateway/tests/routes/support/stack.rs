//! What the end-to-end tests called their stack: here the router in-process on
//! a real database, with the two seeded schools. Test files add the methods
//! only they need in their own `impl Stack`.

use sanyu_store::Db;
use sanyu_test_support::{School, TestDb};
use serde_json::{Value, json};

use super::{Answer, App};

pub struct Stack {
    pub app: App,
    pub conn: Db,
    pub school: School,
    pub other_school: School,
}

impl Stack {
    pub async fn new(db: TestDb) -> Self {
        Self::of(App::start(db).await)
    }

    /// With a key date (`midterm`) open now.
    pub async fn with_midterm(db: TestDb) -> Self {
        let now = chrono::Utc::now();
        let periods = serde_json::from_value(json!([
            {"id": "midterm", "name": "期中考试", "kind": "midterm_exam",
             "opens_at": (now - chrono::Duration::hours(1)).to_rfc3339(),
             "deadline": (now + chrono::Duration::hours(3)).to_rfc3339(),
             "levels": ["class", "school"]},
        ]))
        .expect("periods");
        Self::of(App::start_with(db, |config| config.zero_report.periods = periods).await)
    }

    fn of(app: App) -> Self {
        Self {
            conn: app.db.clone(),
            school: app.a.clone(),
            other_school: app.b.clone(),
            app,
        }
    }

    pub fn report_body(student_no: &str, level: &str, narrative: &str) -> Value {
        let mut body = super::report_body(student_no, level);
        body["narrative"] = json!(narrative);
        body
    }

    pub async fn post_report(&self, token: &str, body: &Value) -> Answer {
        self.post_json(token, "/v1/reports", body).await
    }

    /// `GET path`; an empty `token` sends none.
    pub async fn get(&self, token: &str, path: &str) -> Answer {
        let token = (!token.is_empty()).then_some(token);
        self.app.with_token(token).get(path).await
    }

    pub async fn post_json(&self, token: &str, path: &str, body: &Value) -> Answer {
        self.app
            .with_token(Some(token))
            .post(path, body.clone())
            .await
    }

    /// `POST /v1/cases/{case}/{action}` with a JSON body.
    pub async fn act(&self, token: &str, case: &str, action: &str, body: Value) -> Answer {
        self.post_json(token, &format!("/v1/cases/{case}/{action}"), &body)
            .await
    }
}
