//! The console in-process: a signed-in staff member's session (opened the
//! way a verified code opens one, `sanyu_store::console::open_session`), its
//! cookie and CSRF token, and form posts.

use axum::body::Body;
use axum::http::{Method, Request};
use sanyu_store::entities::staff;
use sanyu_store::sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::{Answer, App, Sch};

/// A signed-in staff member of the console.
pub struct Session<'a> {
    app: &'a App,
    cookie: String,
    /// The session's CSRF token (what its pages put in every form).
    pub csrf: String,
}

impl App {
    /// Sign staff member `staff_no` of `sch` in to the console.
    pub async fn sign_in(&self, sch: Sch, staff_no: &str) -> Session<'_> {
        let id = self.staff_id(sch, staff_no).await;
        let person = staff::Entity::find()
            .filter(staff::Column::Id.eq(id))
            .one(&self.db)
            .await
            .expect("staff")
            .expect("the staff member");
        let opened = sanyu_store::console::open_session(
            &self.db,
            &person,
            "127.0.0.1",
            chrono::Duration::hours(12),
            chrono::Utc::now(),
        )
        .await
        .expect("open a session");
        Session {
            app: self,
            cookie: format!(
                "{}={}",
                sanyu_gateway::console::session::SESSION_COOKIE,
                opened.token
            ),
            csrf: opened.session.csrf_token,
        }
    }
}

impl Session<'_> {
    pub async fn get(&self, path: &str) -> Answer {
        let request = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header("cookie", &self.cookie)
            .body(Body::empty())
            .expect("request");
        self.app.send(request).await
    }

    /// A form post (`application/x-www-form-urlencoded`).
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("cookie", &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .expect("request");
        self.app.send(request).await
    }
}
