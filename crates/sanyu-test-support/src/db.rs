//! Fresh databases per test: a SQLite file in a temp dir, or a new PostgreSQL
//! database (dropped afterwards) on the server named by `SANYU_TEST_PG_URL`.

use sanyu_store::{Db, DbConfig};
use sea_orm::{ConnectionTrait, Database};
use tempfile::TempDir;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestDb {
    pub backend: Backend,
    url: String,
    admin_url: Option<String>,
    name: Option<String>,
    _dir: Option<TempDir>,
}

impl TestDb {
    pub fn sqlite() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sanyu-db-")
            .tempdir()
            .expect("temp dir for SQLite");
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("sanyu.db").display()
        );
        Self {
            backend: Backend::Sqlite,
            url,
            admin_url: None,
            name: None,
            _dir: Some(dir),
        }
    }

    /// A fresh PostgreSQL database, or `None` (with a note on stderr) when no
    /// server is configured. Under CI (`CI=true`) a missing server fails the test.
    pub async fn postgres() -> Option<Self> {
        let admin = match std::env::var("SANYU_TEST_PG_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!(
                        "CI=true but SANYU_TEST_PG_URL is not set: the PostgreSQL suite is required under CI"
                    );
                }
                eprintln!(
                    "SANYU_TEST_PG_URL is not set: skipping the PostgreSQL variant of this test"
                );
                return None;
            }
        };
        Some(Self::postgres_at(&admin).await)
    }

    /// A fresh database on the PostgreSQL server at `admin` (a URL allowed to create databases).
    pub async fn postgres_at(admin: &str) -> Self {
        let admin = admin.to_owned();
        let name = format!("sanyu_t_{}", uuid::Uuid::new_v4().simple());
        let conn = Database::connect(&admin)
            .await
            .expect("connect to PostgreSQL admin URL");
        conn.execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        conn.close().await.ok();
        let url = replace_db_name(&admin, &name);
        Self {
            backend: Backend::Postgres,
            url,
            admin_url: Some(admin),
            name: Some(name),
            _dir: None,
        }
    }

    /// Both backends: SQLite always, PostgreSQL when configured.
    pub async fn all() -> Vec<Self> {
        let mut dbs = vec![Self::sqlite()];
        if let Some(pg) = Self::postgres().await {
            dbs.push(pg);
        }
        dbs
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Connected and migrated.
    pub async fn connect(&self) -> Db {
        let db = sanyu_store::db::connect(&DbConfig::new(self.url.clone()))
            .await
            .expect("connect to test database");
        sanyu_store::db::migrate(&db)
            .await
            .expect("migrate test database");
        db
    }
}

fn replace_db_name(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let (prefix, _) = base.rsplit_once('/').unwrap_or((base, ""));
    match query {
        Some(q) => format!("{prefix}/{name}?{q}"),
        None => format!("{prefix}/{name}"),
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (Some(admin), Some(name)) = (self.admin_url.clone(), self.name.clone()) else {
            return;
        };
        // Drop runs outside any runtime guarantee: use a small one of our own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(conn) = Database::connect(&admin).await {
                    let _ = conn
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_is_replaced_keeping_parameters() {
        assert_eq!(
            replace_db_name("postgres://u@h:5432/postgres?sslmode=disable", "x"),
            "postgres://u@h:5432/x?sslmode=disable"
        );
        assert_eq!(
            replace_db_name("postgres://u@h/postgres", "x"),
            "postgres://u@h/x"
        );
    }
}
