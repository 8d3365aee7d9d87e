//! The database every bench runs on.

/// `--pg-url`: the PostgreSQL server a bench makes its fresh database on.
#[derive(Debug, clap::Args)]
pub struct PgArgs {
    /// PostgreSQL server (a URL allowed to create databases); a fresh database is made on it.
    #[arg(
        long,
        env = "SANYU_TEST_PG_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub pg_url: String,
}
