//! A job before and after it runs: its declaration checked, its file spooled
//! and its row prepared, its progress, and its row errors as CSV.

use super::*;

/// What an import declares about its file.
#[derive(Debug, Clone)]
pub struct Declaration {
    /// Instrument id or name (`PHQ-9`, `phq9`).
    pub instrument: String,
    /// Response coding of the file (`0-3`, `1-4`, `yes1-no2`…).
    pub coding: String,
    pub administered_on: NaiveDate,
    /// XLSX only: the worksheet (default: the first).
    pub sheet: Option<String>,
    pub profile: ColumnProfile,
    /// The file's name as uploaded (for people; never used as a path).
    pub file_name: String,
}

/// The instrument and coding of a declaration, checked.
pub fn check_declaration(
    instrument: &str,
    coding: &str,
) -> Result<(&'static Instrument, Coding), ImportError> {
    let instrument =
        sanyu_screening::instrument(instrument.trim()).map_err(|e| ImportError::Declaration {
            field: "instrument",
            message: e.to_string(),
        })?;
    let coding: Coding =
        coding
            .trim()
            .parse()
            .map_err(|e: ScreeningError| ImportError::Declaration {
                field: "coding",
                message: e.to_string(),
            })?;
    instrument
        .check_coding(coding)
        .map_err(|e| ImportError::Declaration {
            field: "coding",
            message: e.to_string(),
        })?;
    Ok((instrument, coding))
}

/// A new import of a file already on this machine's disk.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: Uuid,
    pub school: school::Model,
    pub declaration: Declaration,
    /// Where the file is (the gateway's spool, or the operator's file).
    pub path: PathBuf,
    pub created_by: Option<Uuid>,
    /// What an XLSX file may unpack to (`[screening.xlsx]`).
    pub xlsx_limits: XlsxLimits,
}

/// Check a file against its declaration and record the import job: `queued`
/// when it fits, `refused` (and [`ImportError::Refused`]) when its columns do
/// not fit the instrument or coding. Invalid declarations record nothing.
#[tracing::instrument(skip_all, fields(import_id = %job.id))]
pub async fn prepare(db: &Db, job: NewJob) -> Result<screening_import::Model, ImportError> {
    let d = &job.declaration;
    let (instrument, coding) = check_declaration(&d.instrument, &d.coding)?;
    let profile_json =
        serde_json::to_string(&d.profile).map_err(|e| ImportError::File(e.to_string()))?;
    let path = job.path.clone();
    let sheet = d.sheet.clone();
    let profile = d.profile.clone();
    let xlsx_limits = job.xlsx_limits.clone();
    let checked = tokio::task::spawn_blocking(move || -> Result<_, ScreeningError> {
        let format = FileFormat::detect(&path)?;
        let reading = file::Reading {
            format,
            instrument,
            coding,
            sheet: sheet.as_deref(),
            profile: &profile,
            xlsx_limits: &xlsx_limits,
        };
        file::with_rows(&path, reading, |_| ())?;
        let total = match format {
            FileFormat::Csv => Some(file::count_csv_rows(&path, profile.header_row())?),
            FileFormat::Xlsx => None,
        };
        Ok((format, total))
    })
    .await
    .map_err(|e| ImportError::File(format!("checking the file: {e}")))?;
    let (format, rows_total, refusal) = match checked {
        Ok((format, total)) => (format, total, None),
        Err(ScreeningError::Io(e)) => {
            return Err(ImportError::File(format!("reading the file: {e}")));
        }
        Err(e) => (FileFormat::Csv, None, Some(e.to_string())),
    };
    let record = NewImport {
        id: job.id,
        school_id: job.school.id,
        instrument: instrument.id().to_owned(),
        coding: coding.as_str().to_owned(),
        administered_on: d.administered_on,
        file_name: d.file_name.clone(),
        file_format: format.as_str().to_owned(),
        sheet: d.sheet.clone(),
        profile: Some(profile_json),
        spool_path: Some(job.path.display().to_string()),
        state: if refusal.is_some() {
            state::REFUSED
        } else {
            state::QUEUED
        },
        error: refusal.clone(),
        rows_total,
        created_by: job.created_by,
    };
    let txn = begin_write(db).await?;
    store::create(&*txn, record).await?;
    txn.commit().await?;
    if let Some(message) = refusal {
        tracing::info!("screening import refused: columns or coding do not fit");
        return Err(ImportError::Refused {
            import_id: job.id,
            message,
        });
    }
    store::get(db, job.id)
        .await?
        .ok_or(ImportError::NotFound(job.id))
}

/// Counters of a job, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub rows_read: i64,
    pub rows_accepted: i64,
    pub rows_rejected: i64,
    pub alerts_raised: i64,
    pub rows_total: Option<i64>,
}

impl From<&screening_import::Model> for Progress {
    fn from(j: &screening_import::Model) -> Self {
        Self {
            rows_read: j.rows_read,
            rows_accepted: j.rows_accepted,
            rows_rejected: j.rows_rejected,
            alerts_raised: j.alerts_raised,
            rows_total: j.rows_total,
        }
    }
}

/// Percent done of a job: 100 when it ended, otherwise from the row estimate.
pub fn percent_done(job: &screening_import::Model) -> Option<u8> {
    match job.state.as_str() {
        state::DONE | state::FAILED | state::REFUSED => Some(100),
        _ => job.rows_total.map(|total| {
            if total <= 0 {
                0
            } else {
                u8::try_from((job.rows_read.saturating_mul(100) / total).clamp(0, 99)).unwrap_or(99)
            }
        }),
    }
}

/// The row errors of an import as CSV (`row,column,reason`), in file order.
pub async fn errors_csv(db: &Db, import_id: Uuid) -> Result<Vec<u8>, ImportError> {
    let mut out = csv::Writer::from_writer(Vec::new());
    let io = |e: csv::Error| ImportError::File(format!("writing CSV: {e}"));
    out.write_record(["row", "column", "reason"]).map_err(io)?;
    let mut after = (0i64, -1i32);
    loop {
        let page = store::row_errors(db, import_id, after, 5000).await?;
        let Some(last) = page.last() else { break };
        after = (last.row_number, last.seq);
        for e in &page {
            out.write_record([e.row_number.to_string().as_str(), &e.column, &e.reason])
                .map_err(io)?;
        }
    }
    out.into_inner()
        .map_err(|e| ImportError::File(format!("writing CSV: {e}")))
}
