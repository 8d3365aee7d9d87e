//! Table `hotline_calls`: calls of a school's psychological support hotline.
use sanyu_domain::RiskLevel;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "hotline_calls")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub school_id: Uuid,
    /// The hotline system's own call id (unique per school).
    pub call_id: String,
    pub started_at: DateTimeUtc,
    pub ended_at: Option<DateTimeUtc>,
    pub caller_type: String,
    pub student_id: Option<Uuid>,
    /// C-SSRS screener answers as six `y`/`n` characters and a seventh for
    /// recent behaviour (within 3 months), e.g. `nnnnnn-n`.
    pub cssrs_answers: Option<String>,
    /// The hotline counsellor's rating: watch, elevated, high, critical.
    pub rating: Option<String>,
    /// The level the call was decided at.
    pub level: RiskLevel,
    /// Summary sealed with the data key (nonce || ciphertext).
    pub summary_sealed: Option<Vec<u8>>,
    /// The hotline counsellor on the call, sealed with the data key.
    pub counsellor_sealed: Option<Vec<u8>>,
    /// The hotline's referral advice, sealed with the data key.
    pub referral_advice_sealed: Option<Vec<u8>>,
    /// Unused since migration 000011 (an unidentified high/critical caller is a
    /// case): rows logged before it may still say `open` or `linked`.
    pub alert_state: Option<String>,
    pub linked_at: Option<DateTimeUtc>,
    /// The INTAKE event of the call (`hotline:<id>`): identified, or
    /// unidentified at high/critical (which opened a case).
    pub event_id: Option<String>,
    pub submitted_by: Uuid,
    pub created_at: DateTimeUtc,
}

no_relations!();
