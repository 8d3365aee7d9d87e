//! The operator's CLI: `migrate`, `roster import`, `token issue|revoke`,
//! `import` (screening files), and `dev` (every service in one process on
//! embedded defaults).

mod dev;
mod screening;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use sanyu_domain::Role;
use sanyu_platform::Config;
use sanyu_store::roster::{self, ImportScope, ImportSummary};
use sanyu_store::tokens::{self, TokenRequest};
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(name = "sanyu", version, about = "Sanyu (三预) operator tool")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply database migrations.
    Migrate,
    /// Import the roster from CSV files.
    Roster {
        #[command(subcommand)]
        command: RosterCommand,
    },
    /// Issue or revoke API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Run every service in one process on embedded defaults (SQLite, local NATS),
    /// with a demo school.
    Dev(dev::DevArgs),
    /// Rules as data: check a rules file.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Check the escalation contacts: every rung that would reach nobody.
    Contacts {
        #[command(subcommand)]
        command: ContactsCommand,
    },
    /// Check the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Import a screening file (CSV in UTF-8 or GBK, or XLSX): score every row,
    /// record the results, and raise signals for results past the cut-offs
    /// (written to the outbox; the running services publish them).
    Import(screening::ImportArgs),
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Validate a rules file: every problem with its line and column (exit 1 on any).
    Check { file: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum ContactsCommand {
    /// Report every rung of every school's escalation ladder that would reach
    /// nobody (no staff in the role, or none reachable). Exit 1 when any does.
    Check {
        /// Only this school (code).
        #[arg(long)]
        school: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chain: finds an edited, deleted or truncated record (exit 1).
    Verify,
}

#[derive(Debug, Subcommand)]
pub enum RosterCommand {
    /// Import students (with schools, grades, classes, guardians) and/or staff.
    Import {
        #[arg(long)]
        students: Option<PathBuf>,
        #[arg(long)]
        staff: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a token; prints the secret on stdout (once: it is stored only as a hash).
    Issue {
        #[arg(long)]
        role: Role,
        #[arg(long)]
        school: String,
        #[arg(long)]
        class: Option<String>,
        #[arg(long)]
        staff: Option<String>,
        #[arg(long)]
        label: Option<String>,
        /// Days until the token expires (default: security.token_ttl_days).
        #[arg(long)]
        ttl_days: Option<i64>,
    },
    /// Revoke a token by its id.
    Revoke {
        #[arg(long)]
        id: Uuid,
    },
}

pub async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Dev(args) => dev::run(args).await,
        Command::Rules {
            command: RulesCommand::Check { file },
        } => Ok(check_rules(&file)),
        command => {
            let config = Config::load().context("loading configuration")?;
            let db = sanyu_store::db::connect(&config.db_config())
                .await
                .context("connecting to the database")?;
            let code = match command {
                Command::Migrate => {
                    sanyu_store::db::migrate(&db).await.context("migrating")?;
                    eprintln!("migrations applied");
                    ExitCode::SUCCESS
                }
                Command::Roster {
                    command: RosterCommand::Import { students, staff },
                } => {
                    if students.is_none() && staff.is_none() {
                        bail!("give --students FILE and/or --staff FILE");
                    }
                    let mut clean = true;
                    if let Some(path) = students {
                        let summary = import_file(&db, &path, true).await?;
                        clean &= print_summary("students", &path, &summary);
                    }
                    if let Some(path) = staff {
                        let summary = import_file(&db, &path, false).await?;
                        clean &= print_summary("staff", &path, &summary);
                    }
                    if clean {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(2)
                    }
                }
                Command::Token {
                    command:
                        TokenCommand::Issue {
                            role,
                            school,
                            class,
                            staff,
                            label,
                            ttl_days,
                        },
                } => {
                    let issued = tokens::issue(
                        &db,
                        TokenRequest {
                            role,
                            school_code: school,
                            class_code: class,
                            staff_no: staff,
                            label,
                            ttl: chrono::Duration::days(
                                ttl_days.unwrap_or(config.security.token_ttl_days),
                            ),
                        },
                    )
                    .await?;
                    eprintln!(
                        "token {} expires {}",
                        issued.id,
                        issued.expires_at.to_rfc3339()
                    );
                    println!("{}", issued.secret);
                    ExitCode::SUCCESS
                }
                Command::Token {
                    command: TokenCommand::Revoke { id },
                } => {
                    if tokens::revoke(&db, id).await? {
                        eprintln!("token {id} revoked");
                        ExitCode::SUCCESS
                    } else {
                        eprintln!("no token {id}");
                        ExitCode::FAILURE
                    }
                }
                Command::Audit {
                    command: AuditCommand::Verify,
                } => {
                    let key = sanyu_store::audit::AuditKey::from_data_key(
                        config.security.data_key.expose(),
                    )
                    .context("security.data_key (the audit chain's key derives from it)")?;
                    let result = sanyu_store::audit::verify(&db, &key).await?;
                    match result.problem {
                        None => {
                            println!("audit log intact: {} records", result.records);
                            ExitCode::SUCCESS
                        }
                        Some(problem) => {
                            println!(
                                "audit log BROKEN after {} good records: {problem}",
                                result.records
                            );
                            ExitCode::FAILURE
                        }
                    }
                }
                Command::Contacts {
                    command: ContactsCommand::Check { school },
                } => {
                    let report = sanyu_escalation::contacts::check(
                        &db,
                        &config.escalation,
                        school.as_deref(),
                    )
                    .await?;
                    for gap in &report.gaps {
                        println!("GAP {gap}");
                    }
                    println!(
                        "{} schools, {} rungs checked, {} reach nobody",
                        report.schools,
                        report.rungs_checked,
                        report.gaps.len()
                    );
                    if report.gaps.is_empty() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Command::Import(args) => {
                    screening::run(&db, args, config.screening.worse_margin_percent).await?
                }
                Command::Dev(_) | Command::Rules { .. } => ExitCode::FAILURE,
            };
            db.close().await.ok();
            Ok(code)
        }
    }
}

/// `sanyu rules check FILE`.
fn check_rules(file: &std::path::Path) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    match sanyu_ruleset::RuleSet::parse(&text) {
        Ok(rules) => {
            println!(
                "{}: ok, version {}, {} rules, {} periods",
                file.display(),
                rules.version,
                rules.rules.len(),
                rules.periods.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                println!("{}:{}:{}: {}", file.display(), e.line, e.column, e.message);
            }
            ExitCode::FAILURE
        }
    }
}

/// Import one roster file in one transaction.
pub async fn import_file(
    db: &sanyu_store::Db,
    path: &std::path::Path,
    students: bool,
) -> Result<ImportSummary> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let txn = sanyu_store::begin_write(db).await?;
    let summary = if students {
        roster::import_students(&*txn, file, ImportScope::Operator).await?
    } else {
        roster::import_staff(&*txn, file, ImportScope::Operator).await?
    };
    txn.commit().await?;
    Ok(summary)
}

fn print_summary(what: &str, path: &std::path::Path, s: &ImportSummary) -> bool {
    println!(
        "{what} {}: {} rows, {} created, {} updated, {} unchanged, {} rejected",
        path.display(),
        s.rows,
        s.created,
        s.updated,
        s.unchanged,
        s.errors.len()
    );
    for e in &s.errors {
        match &e.field {
            Some(field) => println!("  line {}: {field}: {}", e.line, e.message),
            None => println!("  line {}: {}", e.line, e.message),
        }
    }
    s.errors.is_empty()
}
