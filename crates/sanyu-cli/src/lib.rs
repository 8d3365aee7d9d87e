//! The operator's CLI: `migrate`, `roster import`, `token issue|revoke`,
//! `import` (screening files), `audit verify`, `contacts check`, `rules
//! check|simulate`, `outbox status|replay` (recovery from a backup), and `dev`
//! (every service in one process on embedded defaults).

mod dev;
mod screening;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use sanyu_domain::Role;
use sanyu_events::NotificationReason;
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
    /// The transactional outbox: what waits to be published, and the replay
    /// step of a recovery from a database backup (deploy/README.md).
    Outbox {
        #[command(subcommand)]
        command: OutboxCommand,
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
    /// Replay the stored signals of a date range through a candidate rules
    /// file, without side effects, and print per school what would change
    /// against the rules in force (cases opened, levels raised, watch list).
    Simulate {
        /// The candidate rules file.
        #[arg(long)]
        rules: PathBuf,
        /// First day of the range (inclusive), YYYY-MM-DD.
        #[arg(long)]
        from: chrono::NaiveDate,
        /// Last day of the range (inclusive), YYYY-MM-DD.
        #[arg(long)]
        to: chrono::NaiveDate,
        /// Compare against this file instead of the rules in force
        /// (`rules.file` of the configuration, or the built-in rules).
        #[arg(long)]
        against: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ContactsCommand {
    /// Report every rung of every school's escalation ladder that would reach
    /// nobody (no staff in the role, or none reachable), and every window of
    /// the next 30 days in which an `on_duty:<role>` rung has nobody on duty
    /// (`DUTY WARN` when it starts within a week). Exit 1 when a rung reaches
    /// nobody or a duty gap starts within a week.
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
pub enum OutboxCommand {
    /// How many events wait to be published.
    Status,
    /// After restoring the database from a backup onto a NATS store that did
    /// not survive (or is older than the backup): publish again every event
    /// published at or after `--since` (take the backup's start time minus the
    /// longest consumer lag you allow, e.g. one hour). Consumers record the
    /// event ids they processed with their effects, so what was already
    /// handled does nothing twice; what was published but not yet handled is
    /// handled now.
    Replay {
        /// RFC 3339 time, e.g. 2026-12-06T02:00:00Z.
        #[arg(long)]
        since: chrono::DateTime<chrono::Utc>,
    },
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
    /// `--deployment` (with `--role admin`, no `--school`) issues a deployment-level
    /// admin's token: dead letters of no school, role grants of schools without a
    /// leader or crisis team.
    Issue {
        #[arg(long)]
        role: Role,
        #[arg(
            long,
            required_unless_present = "deployment",
            conflicts_with = "deployment"
        )]
        school: Option<String>,
        /// A token without a school, for the deployment's admin.
        #[arg(long, conflicts_with_all = ["class", "staff"])]
        deployment: bool,
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
                    // With the data key when there is one: a migration that
                    // seals free text stored in clear needs it (and says so).
                    if config.security.data_key.is_empty() {
                        sanyu_store::db::migrate(&db).await
                    } else {
                        let key = config.sealer().context("security.data_key")?;
                        sanyu_store::db::migrate_with_key(&db, &key).await
                    }
                    .context("migrating")?;
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
                    let key = sanyu_store::audit::AuditKey::from_data_key(
                        config.security.data_key.expose(),
                    )
                    .context("security.data_key (the audit chain's key derives from it)")?;
                    if let Some(path) = students {
                        let summary = import_file(&db, &path, true, &key).await?;
                        clean &= print_summary("students", &path, &summary);
                    }
                    if let Some(path) = staff {
                        let summary = import_file(&db, &path, false, &key).await?;
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
                            deployment,
                            class,
                            staff,
                            label,
                            ttl_days,
                        },
                } => {
                    let ttl =
                        chrono::Duration::days(ttl_days.unwrap_or(config.security.token_ttl_days));
                    let issued = match school {
                        Some(school) if !deployment => {
                            tokens::issue(
                                &db,
                                TokenRequest {
                                    role,
                                    school_code: school,
                                    class_code: class,
                                    staff_no: staff,
                                    label,
                                    ttl,
                                },
                            )
                            .await?
                        }
                        _ if role == Role::Admin => {
                            tokens::issue_deployment(&db, label, ttl).await?
                        }
                        _ => anyhow::bail!("--deployment issues only `--role admin` tokens"),
                    };
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
                    let duty = sanyu_escalation::contacts::DutyCalendar::new(
                        &config.notify.time_zone,
                        config.zero_report.clone(),
                    )
                    .map_err(anyhow::Error::msg)
                    .context("notify.time_zone")?;
                    let report = sanyu_escalation::contacts::check(
                        &db,
                        &config.escalation,
                        school.as_deref(),
                        &duty,
                        chrono::Utc::now(),
                        config.sms.primary.is_some()
                            || config.voice.provider.is_some()
                            || config.im.provider.is_some(),
                    )
                    .await?;
                    for gap in &report.gaps {
                        println!("GAP {gap}");
                    }
                    for gap in &report.duty_gaps {
                        let tag = if gap.soon { "DUTY WARN" } else { "DUTY" };
                        println!("{tag} {gap}");
                    }
                    println!(
                        "{} schools, {} rungs checked, {} reach nobody",
                        report.schools,
                        report.rungs_checked,
                        report.gaps.len()
                    );
                    if !report.duty_gaps.is_empty() {
                        println!(
                            "{} duty gaps in the next {} days, {} within a week",
                            report.duty_gaps.len(),
                            sanyu_escalation::contacts::DUTY_HORIZON_DAYS,
                            report.duty_warnings()
                        );
                    }
                    if report.gaps.is_empty() && report.duty_warnings() == 0 {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Command::Outbox {
                    command: OutboxCommand::Status,
                } => {
                    let waiting = sanyu_store::outbox::pending_count(&db).await?;
                    println!("{waiting} events wait to be published");
                    ExitCode::SUCCESS
                }
                Command::Outbox {
                    command: OutboxCommand::Replay { since },
                } => {
                    let again = sanyu_store::outbox::republish_since(&db, since).await?;
                    println!(
                        "{again} events published since {} wait to be published again; \
                         the running services publish them",
                        since.to_rfc3339()
                    );
                    ExitCode::SUCCESS
                }
                Command::Import(args) => screening::run(&db, args, &config.screening).await?,
                Command::Rules {
                    command:
                        RulesCommand::Simulate {
                            rules,
                            from,
                            to,
                            against,
                        },
                } => simulate_rules(&db, &config, &rules, against.as_deref(), from, to).await?,
                Command::Dev(_)
                | Command::Rules {
                    command: RulesCommand::Check { .. },
                } => ExitCode::FAILURE,
            };
            db.close().await.ok();
            Ok(code)
        }
    }
}

fn read_rules(file: &std::path::Path) -> Result<sanyu_ruleset::RuleSet> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    sanyu_ruleset::RuleSet::parse(&text).map_err(|errors| {
        let listed: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("{} is invalid: {}", file.display(), listed.join("; "))
    })
}

/// `sanyu rules simulate --rules FILE --from DATE --to DATE`.
async fn simulate_rules(
    db: &sanyu_store::Db,
    config: &Config,
    candidate: &std::path::Path,
    against: Option<&std::path::Path>,
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
) -> Result<ExitCode> {
    use sanyu_ruleset::simulate::{self, Replayed};
    let candidate = read_rules(candidate)?;
    let in_force = match against {
        Some(file) => read_rules(file)?,
        None if !config.rules.file.is_empty() => {
            read_rules(std::path::Path::new(&config.rules.file))?
        }
        None => sanyu_ruleset::RuleSet::parse(sanyu_ruleset::DEFAULT_RULES)
            .map_err(|_| anyhow::anyhow!("the built-in rules are invalid"))?,
    };
    let start = from.and_time(chrono::NaiveTime::MIN).and_utc();
    let end = (to + chrono::Duration::days(1))
        .and_time(chrono::NaiveTime::MIN)
        .and_utc();
    let rows = sanyu_store::decisions::in_range(db, start, end).await?;
    let schools: std::collections::HashMap<Uuid, String> = sanyu_store::roster::schools(db)
        .await?
        .into_iter()
        .map(|s| (s.id, s.code))
        .collect();
    let history: Vec<Replayed> = rows
        .iter()
        .filter_map(|row| {
            Some(Replayed {
                school: schools
                    .get(&row.school_id)
                    .cloned()
                    .unwrap_or_else(|| row.school_id.to_string()),
                student: row.student_id.to_string(),
                signal: sanyu_rules::signal_of_row(row)?,
            })
        })
        .collect();
    let comparison = simulate::compare(&in_force, &candidate, &history);
    print!("{}", simulate::render(&in_force, &candidate, &comparison));
    println!("range {from} .. {to}: {} signals replayed", history.len());
    Ok(ExitCode::SUCCESS)
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

/// Import one roster file in one transaction. A role that reads cases the
/// operator gives takes effect at once (this is how a school's first staff
/// are set up); each is recorded as a confirmed role grant, written to the
/// audit log (`role_grants.operator`) and announced to the school's leaders
/// and crisis team in the same transaction.
pub async fn import_file(
    db: &sanyu_store::Db,
    path: &std::path::Path,
    students: bool,
    audit_key: &sanyu_store::audit::AuditKey,
) -> Result<ImportSummary> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let txn = sanyu_store::begin_write(db).await?;
    let summary = if students {
        roster::import_students(&*txn, file, ImportScope::Operator).await?
    } else {
        roster::import_staff(&*txn, file, ImportScope::Operator).await?
    };
    let now = chrono::Utc::now();
    for given in &summary.operator_role_grants {
        let grant = sanyu_store::role_grants::record_operator(
            &*txn,
            given.school_id,
            given.staff_id,
            given.role,
            now,
        )
        .await?;
        sanyu_store::audit::append_in(
            &*txn,
            audit_key,
            sanyu_store::audit::AuditEntry {
                actor_token_id: None,
                actor_role: "operator".to_owned(),
                actor_staff_id: None,
                school_id: Some(given.school_id),
                action: "role_grants.operator".to_owned(),
                target: format!("role_grant:{}", grant.id),
                source: "cli".to_owned(),
            },
        )
        .await?;
        let school = roster::school_by_id(&*txn, given.school_id)
            .await?
            .context("the school of an imported staff row")?;
        sanyu_escalation::announce_role_grant(
            &*txn,
            &school,
            grant.id,
            NotificationReason::RoleGranted,
            now,
            None,
        )
        .await?;
    }
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
