//! `sanyu import FILE`: the same import the gateway runs, in the foreground,
//! against the configured database, with a progress bar on stderr.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use chrono::NaiveDate;
use indicatif::{ProgressBar, ProgressStyle};
use sanyu_importer::{Declaration, ImportError, NewJob, ProcessOptions, Progress};
use sanyu_platform::config::ScreeningConfig;
use sanyu_platform::relay::Waker;
use sanyu_screening::ColumnProfile;
use sanyu_store::screening::state;
use sanyu_store::{Db, roster};
use uuid::Uuid;

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The screening file: CSV (UTF-8, with or without BOM, or GBK) or XLSX.
    pub file: PathBuf,
    /// School code.
    #[arg(long)]
    pub school: String,
    /// Instrument: PHQ-9, PHQ-A, GAD-7, SCL-90, MHT, UPI, SDQ, K10, C-SSRS.
    #[arg(long)]
    pub instrument: String,
    /// Response coding of the file: 0-3, 1-4, 0-4, 1-5, 0-2, yes1-no0, yes1-no2.
    #[arg(long)]
    pub coding: String,
    /// Administration date (YYYY-MM-DD).
    #[arg(long)]
    pub administered: NaiveDate,
    /// XLSX: the worksheet (default: the first).
    #[arg(long)]
    pub sheet: Option<String>,
    /// Column profile (TOML or JSON) for an export format the defaults do not know.
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// Where to write the row errors (CSV). Default: next to FILE, `<FILE>.errors.csv`.
    #[arg(long)]
    pub errors: Option<PathBuf>,
    /// Rows per transaction.
    #[arg(long, default_value_t = 2000)]
    pub batch_rows: usize,
}

fn load_profile(path: &Path) -> Result<ColumnProfile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    {
        serde_json::from_str(&text).with_context(|| format!("column profile {}", path.display()))
    } else {
        toml::from_str(&text).with_context(|| format!("column profile {}", path.display()))
    }
}

fn default_errors_path(file: &Path) -> PathBuf {
    let mut name = file
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".errors.csv");
    file.with_file_name(name)
}

fn progress_bar(total: Option<i64>) -> ProgressBar {
    let bar = match total.and_then(|t| u64::try_from(t).ok()) {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} rows ({per_sec}) {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {pos} rows ({per_sec}) {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    bar
}

/// Run `sanyu import`. Exit codes: 0 every row accepted, 2 some rows rejected
/// (see the error report), 3 file refused, 1 import failed.
pub async fn run(db: &Db, args: ImportArgs, config: &ScreeningConfig) -> Result<ExitCode> {
    let school = roster::school_by_code(db, &args.school)
        .await?
        .with_context(|| format!("no school with code `{}`", args.school))?;
    let profile = match &args.profile {
        Some(path) => load_profile(path)?,
        None => ColumnProfile::default(),
    };
    let path = std::fs::canonicalize(&args.file)
        .with_context(|| format!("opening {}", args.file.display()))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prepared = sanyu_importer::prepare(
        db,
        NewJob {
            id: Uuid::now_v7(),
            school,
            declaration: Declaration {
                instrument: args.instrument.clone(),
                coding: args.coding.clone(),
                administered_on: args.administered,
                sheet: args.sheet.clone(),
                profile,
                file_name,
            },
            path: path.clone(),
            created_by: None,
            xlsx_limits: config.xlsx.clone(),
        },
    )
    .await;
    let job = match prepared {
        Ok(job) => job,
        Err(ImportError::Refused { import_id, message }) => {
            println!("import {import_id} refused: {message}");
            return Ok(ExitCode::from(3));
        }
        Err(ImportError::Declaration { field, message }) => bail!("--{field}: {message}"),
        Err(e) => return Err(e.into()),
    };
    let bar = progress_bar(job.rows_total);
    let shown = bar.clone();
    let options = ProcessOptions {
        batch_rows: args.batch_rows,
        worse_margin_percent: config.worse_margin_percent,
        xlsx_limits: config.xlsx.clone(),
        progress: Some(Arc::new(move |p: Progress| {
            shown.set_position(u64::try_from(p.rows_read).unwrap_or(0));
            shown.set_message(format!(
                "{} accepted, {} rejected, {} alerts",
                p.rows_accepted, p.rows_rejected, p.alerts_raised
            ));
        })),
        ..ProcessOptions::default()
    };
    // Nothing in this process publishes: the services' outbox relays pick up
    // the signals this import writes.
    let job = sanyu_importer::process(db, &Waker::default(), job.id, &options).await?;
    bar.finish_and_clear();

    println!(
        "import {} {}: {} rows read, {} accepted, {} rejected, {} with a suicide alert",
        job.id, job.state, job.rows_read, job.rows_accepted, job.rows_rejected, job.alerts_raised
    );
    if let Some(error) = &job.error {
        println!("error: {error}");
    }
    if job.rows_rejected > 0 {
        let errors_path = args.errors.unwrap_or_else(|| default_errors_path(&path));
        let csv = sanyu_importer::errors_csv(db, job.id).await?;
        std::fs::write(&errors_path, csv)
            .with_context(|| format!("writing {}", errors_path.display()))?;
        println!("row errors: {}", errors_path.display());
    } else {
        println!("no row errors");
    }
    Ok(match job.state.as_str() {
        state::DONE if job.rows_rejected == 0 => ExitCode::SUCCESS,
        state::DONE => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_report_goes_next_to_the_file() {
        assert_eq!(
            default_errors_path(Path::new("/data/普查/phq9.csv")),
            PathBuf::from("/data/普查/phq9.csv.errors.csv")
        );
    }
}
