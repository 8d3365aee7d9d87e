//! Message templates per audience, locale and channel, and the privacy rules
//! they obey. (Over 600 lines because every text a message may carry and
//! the deny-list it is checked against are kept in this one file, to be
//! reviewed together; digests render in `templates/digest.rs`.)
//!
//! # What may be in a message
//!
//! * **Staff** (SMS and email): school name, the opaque case reference
//!   (`C-7F3K2Q`), the case level in words (一级（紧急）/ `critical`), a link into
//!   Sanyu, and the time.
//! * **Guardian** (SMS only): school name, the counsellor's display name
//!   (`王老师`), the counsellor's phone, the opaque case reference and the time.
//!   Never a level.
//!
//! Nothing else can be: the render functions read their input only through
//! [`NotificationFacts`], whose methods are exactly those fields. A caller's
//! case type may well hold the student's name, the narrative or a score —
//! there is no method through which a template could reach them. The canary
//! test in `tests/it/template_privacy.rs` proves it with such a type.
//!
//! # The deny-list
//!
//! Every rendered text is checked before it is returned ([`TemplateError::DeniedWord`]):
//! words that would disclose why the school is writing (自杀, 抑郁, 心理危机,
//! suicide, depression, PHQ, score, …) are refused for every audience. SMS and
//! email previews show on lock screens and shared family phones.
//!
//! `心理` is refused for **both** audiences. For guardians that is the point —
//! "心理老师" on a parent's lock screen says what the call is about. For staff
//! it costs nothing: staff messages carry a case reference and a link, never a
//! title, and a school name containing 心理 would be refused loudly rather
//! than sent. Guardians additionally may not see level words (一级, 紧急,
//! `critical`, `level`, …), 预警, 个案 or counselling words (咨询, 辅导,
//! `counsel`), because their message says only "please call this person".
//!
//! # Providers in mainland China
//!
//! Alibaba Cloud and Tencent Cloud send only pre-approved templates: the
//! adapter sends the approved template's id and the *named parameters* of
//! [`RenderedSms::params`], chosen and ordered by configuration
//! ([`crate::ApprovedTemplate`]). The texts here are what the webhook sends
//! and what the approved templates should say.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use chrono::{DateTime, FixedOffset};
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};
use serde::{Deserialize, Serialize};

use crate::error::TemplateError;

/// Who receives the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    Staff,
    Guardian,
    /// A staff member signing in to the console: the one-time code and how
    /// long it holds, nothing else (see [`render_sign_in_sms`]).
    SignIn,
    /// The answer to a staff member's SMS reply: whether it acknowledged a
    /// case, and if not why (see [`render_ack_reply_sms`]).
    AckReply,
    /// Several non-critical notices to one staff member in one message: how
    /// many, the highest level, the first references and a link to the queue
    /// (see [`render_digest_sms`]).
    Digest,
}

impl Audience {
    /// The audiences of messages about a case (rendered from
    /// [`NotificationFacts`] by [`render_sms`]); [`Audience::SignIn`] has its
    /// own renderer.
    pub const ALL: [Audience; 2] = [Self::Staff, Self::Guardian];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Staff => "staff",
            Self::Guardian => "guardian",
            Self::SignIn => "sign_in",
            Self::AckReply => "ack_reply",
            Self::Digest => "digest",
        }
    }

    /// The parameter names this audience's messages have, in canonical order.
    pub fn param_names(self) -> &'static [&'static str] {
        match self {
            Self::Staff => &STAFF_PARAMS,
            Self::Guardian => &GUARDIAN_PARAMS,
            Self::SignIn => &SIGN_IN_PARAMS,
            Self::AckReply => &ACK_REPLY_PARAMS,
            Self::Digest => &DIGEST_PARAMS,
        }
    }
}

impl fmt::Display for Audience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The language of the message. `zh-CN` is the default.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
pub enum Locale {
    #[default]
    #[serde(rename = "zh-CN")]
    ZhCn,
    #[serde(rename = "en")]
    En,
}

impl Locale {
    pub const ALL: [Locale; 2] = [Self::ZhCn, Self::En];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ZhCn => "zh-CN",
            Self::En => "en",
        }
    }
}

impl fmt::Display for Locale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The channel a template is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Sms,
    Email,
    /// A work-IM message (WeCom, DingTalk).
    Im,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sms => "sms",
            Self::Email => "email",
            Self::Im => "im",
        }
    }
}

/// The case levels a staff message can name. (The domain's `watch` level
/// never opens a case and is never notified.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertLevel {
    Elevated,
    High,
    Critical,
}

impl AlertLevel {
    pub const ALL: [AlertLevel; 3] = [Self::Elevated, Self::High, Self::Critical];

    /// The level in words: 一级（紧急） / 二级（高） / 三级（较高） for `zh-CN`,
    /// matching the domain's 一级 = critical, 二级 = high, 三级 = elevated.
    pub fn words(self, locale: Locale) -> &'static str {
        match (locale, self) {
            (Locale::ZhCn, Self::Critical) => "一级（紧急）",
            (Locale::ZhCn, Self::High) => "二级（高）",
            (Locale::ZhCn, Self::Elevated) => "三级（较高）",
            (Locale::En, Self::Critical) => "critical",
            (Locale::En, Self::High) => "high",
            (Locale::En, Self::Elevated) => "elevated",
        }
    }
}

/// The only facts a message may be built from. Implement it for whatever the
/// notifier holds about a case; the render functions see nothing else.
pub trait NotificationFacts {
    fn school_name(&self) -> &str;
    /// The opaque case reference (`C-` followed by Crockford base32).
    fn case_reference(&self) -> &str;
    /// Used for staff messages only; guardian templates never call it.
    fn level(&self) -> AlertLevel;
    /// Link into Sanyu for staff (`https://…`).
    fn case_link(&self) -> &str;
    /// The acknowledgement link of the notice (`https://…/a/<token>`), or
    /// empty: a staff SMS then links here instead of to the case page (the
    /// page it opens shows the case's facts, acknowledges only on a button
    /// and opens the case; the link is also shorter), and the staff email
    /// carries both.
    fn ack_link(&self) -> &str {
        ""
    }
    /// When the case was opened or escalated, in the school's time zone.
    fn occurred_at(&self) -> DateTime<FixedOffset>;
    /// The counsellor as guardians know them (`王老师`).
    fn counsellor_display_name(&self) -> &str;
    fn counsellor_phone(&self) -> &str;
}

const STAFF_PARAMS: [&str; 5] = ["school", "case_ref", "level", "link", "time"];
const SIGN_IN_PARAMS: [&str; 2] = ["code", "minutes"];
const ACK_REPLY_PARAMS: [&str; 3] = ["outcome", "case_ref", "refs"];
const DIGEST_PARAMS: [&str; 5] = ["school", "count", "level", "refs", "link"];

/// What a staff member's SMS reply came to (the answer they are sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckReplyOutcome {
    /// The case (`case_ref`) is acknowledged.
    Confirmed,
    /// "1" while several cases sent to them wait (`refs`): reply with one.
    Ambiguous,
    /// No unacknowledged case was sent to them (or the code is none of theirs).
    NoCase,
    /// The case (`case_ref`) was acknowledged already.
    AlreadyAcknowledged,
    /// Their role may not acknowledge that case.
    NotAllowed,
    /// Neither "1" nor a case reference.
    Unreadable,
}

impl AckReplyOutcome {
    pub const ALL: [AckReplyOutcome; 6] = [
        Self::Confirmed,
        Self::Ambiguous,
        Self::NoCase,
        Self::AlreadyAcknowledged,
        Self::NotAllowed,
        Self::Unreadable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            Self::Ambiguous => "ambiguous",
            Self::NoCase => "no_case",
            Self::AlreadyAcknowledged => "already_acknowledged",
            Self::NotAllowed => "not_allowed",
            Self::Unreadable => "unreadable",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }
}
const GUARDIAN_PARAMS: [&str; 5] = [
    "school",
    "counsellor",
    "counsellor_phone",
    "case_ref",
    "time",
];

/// A rendered SMS: the full text (sent by the webhook) and the named
/// parameters (sent to an approved template by Alibaba Cloud / Tencent Cloud),
/// in the canonical order of [`Audience::param_names`].
///
/// `Debug` shows only audience, locale and parameter names.
#[derive(Clone, PartialEq, Eq)]
pub struct RenderedSms {
    pub audience: Audience,
    pub locale: Locale,
    pub text: String,
    pub params: Vec<(&'static str, String)>,
}

impl RenderedSms {
    /// `staff.zh-CN`: the template name the webhook receives.
    pub fn template_name(&self) -> String {
        format!("{}.{}", self.audience, self.locale)
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Debug for RenderedSms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.params.iter().map(|(n, _)| *n).collect();
        f.debug_struct("RenderedSms")
            .field("audience", &self.audience)
            .field("locale", &self.locale)
            .field("params", &names)
            .finish_non_exhaustive()
    }
}

/// A rendered staff email. `Debug` shows nothing of the content.
#[derive(Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    pub locale: Locale,
    pub subject: String,
    pub body: String,
}

impl fmt::Debug for RenderedEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RenderedEmail")
            .field("locale", &self.locale)
            .finish_non_exhaustive()
    }
}

/// Renders the SMS for `audience` in `locale`. This is the function the
/// notifier calls.
pub fn render_sms(
    audience: Audience,
    locale: Locale,
    facts: &impl NotificationFacts,
) -> Result<RenderedSms, TemplateError> {
    let params = match audience {
        Audience::Staff => staff_params(locale, facts, sms_link(facts))?,
        Audience::Guardian => guardian_params(facts)?,
        Audience::SignIn | Audience::AckReply | Audience::Digest => {
            return Err(TemplateError::InvalidField {
                field: "audience",
                rule: "sign-in, reply and digest SMS have their own renderers",
            });
        }
    };
    let name = template_name(Channel::Sms, audience, locale, None);
    let text = render(&name, &params)?;
    check_privacy(audience, Channel::Sms, &mask_generated(&text, &params))?;
    for (_, value) in &params {
        check_privacy(audience, Channel::Sms, &mask_generated(value, &params))?;
    }
    Ok(RenderedSms {
        audience,
        locale,
        text,
        params,
    })
}

/// Renders a staff work-IM message (WeCom, DingTalk) about a case in
/// `locale`: the staff SMS's facts — school, reference, level, time — and
/// the link (the acknowledgement page when there is one, else the case page),
/// without the SMS's "reply 1", which a chat reply cannot do.
pub fn render_staff_im(
    locale: Locale,
    facts: &impl NotificationFacts,
) -> Result<String, TemplateError> {
    let params = staff_params(locale, facts, sms_link(facts))?;
    let text = render(
        &template_name(Channel::Im, Audience::Staff, locale, None),
        &params,
    )?;
    check_privacy(
        Audience::Staff,
        Channel::Im,
        &mask_generated(&text, &params),
    )?;
    Ok(text)
}

/// Renders the console sign-in SMS in `locale`: the one-time `code` (4 to 10
/// digits) and the `minutes` it holds. The only parameter an approved
/// template needs is `code` (Alibaba Cloud `${code}`, Tencent Cloud `{1}`);
/// there is no case, no student and no link in it.
pub fn render_sign_in_sms(
    locale: Locale,
    code: &str,
    minutes: i64,
) -> Result<RenderedSms, TemplateError> {
    if !(4..=10).contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TemplateError::InvalidField {
            field: "code",
            rule: "must be 4 to 10 digits",
        });
    }
    if !(1..=1440).contains(&minutes) {
        return Err(TemplateError::InvalidField {
            field: "minutes",
            rule: "must be between 1 and 1440",
        });
    }
    let params = vec![("code", code.to_owned()), ("minutes", minutes.to_string())];
    let audience = Audience::SignIn;
    let text = render(
        &template_name(Channel::Sms, audience, locale, None),
        &params,
    )?;
    check_privacy(audience, Channel::Sms, &text)?;
    Ok(RenderedSms {
        audience,
        locale,
        text,
        params,
    })
}

/// Renders the answer to a staff member's SMS reply in `locale`: the
/// outcome in words, and the case reference(s) it is about (opaque
/// references only: no school, no level, no link, no name).
pub fn render_ack_reply_sms(
    locale: Locale,
    outcome: AckReplyOutcome,
    case_ref: Option<&str>,
    refs: &[String],
) -> Result<RenderedSms, TemplateError> {
    let case_ref = match case_ref {
        Some(r) => case_reference(r)?,
        None => String::new(),
    };
    let refs = refs
        .iter()
        .take(5)
        .map(|r| case_reference(r))
        .collect::<Result<Vec<_>, _>>()?
        .join(", ");
    let params = vec![
        ("outcome", outcome.as_str().to_owned()),
        ("case_ref", case_ref),
        ("refs", refs),
    ];
    let audience = Audience::AckReply;
    let text = render(
        &template_name(Channel::Sms, audience, locale, None),
        &params,
    )?;
    // References are opaque: masked before the deny-list like a case alert's.
    let mut masked = text.clone();
    for (name, value) in &params {
        if *name != "outcome" {
            for r in value.split(", ").filter(|r| !r.is_empty()) {
                masked = mask_reference(&masked, r);
            }
        }
    }
    check_privacy(audience, Channel::Sms, &masked)?;
    Ok(RenderedSms {
        audience,
        locale,
        text,
        params,
    })
}

/// Renders the staff email (subject and plain-text body) in `locale`.
/// Guardians are not emailed.
pub fn render_staff_email(
    locale: Locale,
    facts: &impl NotificationFacts,
) -> Result<RenderedEmail, TemplateError> {
    let mut params = staff_params(locale, facts, facts.case_link())?;
    let ack = match facts.ack_link() {
        "" => String::new(),
        ack => link(ack)?,
    };
    params.push(("ack_link", ack));
    let subject = render(
        &template_name(Channel::Email, Audience::Staff, locale, Some("subject")),
        &params,
    )?;
    let body = render(
        &template_name(Channel::Email, Audience::Staff, locale, Some("body")),
        &params,
    )?;
    check_privacy(
        Audience::Staff,
        Channel::Email,
        &mask_generated(&subject, &params),
    )?;
    check_privacy(
        Audience::Staff,
        Channel::Email,
        &mask_generated(&body, &params),
    )?;
    Ok(RenderedEmail {
        locale,
        subject,
        body,
    })
}

mod digest;
pub use digest::{
    DigestEntry, DigestFacts, render_digest_email, render_digest_im, render_digest_sms,
};

/// Words refused in every message (matched case-insensitively).
pub const DENIED_FOR_EVERYONE: &[&str] = &[
    // zh-CN: what happened, how it was assessed.
    "自杀",
    "自残",
    "自伤",
    "轻生",
    "寻死",
    "割腕",
    "抑郁",
    "焦虑",
    "精神",
    "心理",
    "危机",
    "诊断",
    "症",
    "量表",
    "得分",
    "分数",
    "评分",
    "叙述", // en
    "suicid",
    "self-harm",
    "self harm",
    "selfharm",
    "depress",
    "anxiety",
    "anxious",
    "diagnos",
    "psychiat",
    "psycholog",
    "mental health",
    "mental illness",
    "crisis",
    "disorder",
    "therap",
    "phq",
    "gad-7",
    "gad7",
    "score",
    "narrative",
];

/// Words additionally refused in guardian messages: no level, no hint of a
/// case or of counselling.
pub const DENIED_FOR_GUARDIANS: &[&str] = &[
    "一级", "二级", "三级", "紧急", "级别", "预警", "个案", "咨询", "辅导", "critical", "urgent",
    "elevated", "level", "warning", "counsel",
];

/// The deny-list for an audience.
pub fn denied_words(audience: Audience) -> impl Iterator<Item = &'static str> {
    let extra: &[&str] = match audience {
        Audience::Staff | Audience::SignIn | Audience::AckReply | Audience::Digest => &[],
        Audience::Guardian => DENIED_FOR_GUARDIANS,
    };
    DENIED_FOR_EVERYONE.iter().chain(extra.iter()).copied()
}

fn param_value<'a>(params: &'a [(&'static str, String)], name: &str) -> &'a str {
    params
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

/// The case reference is opaque by construction (`C-` + Crockford base32,
/// checked by `case_reference`), so it is masked before the deny-list runs:
/// a random reference such as `C-7PHQ2K` or `C-GAD7XY` spells no word, and
/// refusing it would leave that case's notifications unsendable for good.
/// The same for the links: a link is the configured base URL and what Sanyu
/// generated (a case id, or an acknowledgement link's random token, which
/// may spell `phq` or `gad7` as well as any reference). The deny-list reads
/// everything else: the templates' text and the school's name.
fn mask_generated(text: &str, params: &[(&'static str, String)]) -> String {
    let mut masked = text.to_owned();
    for name in ["ack_link", "link"] {
        let value = param_value(params, name);
        if !value.is_empty() {
            masked = masked.replace(value, "LINK");
        }
    }
    mask_reference(&masked, param_value(params, "case_ref"))
}

fn mask_reference(text: &str, reference: &str) -> String {
    if reference.is_empty() {
        text.to_owned()
    } else {
        text.replace(reference, "C-REF")
    }
}

fn check_privacy(audience: Audience, channel: Channel, text: &str) -> Result<(), TemplateError> {
    let lower = text.to_lowercase();
    match denied_words(audience).find(|word| lower.contains(word)) {
        Some(word) => Err(TemplateError::DeniedWord {
            audience: audience.as_str(),
            channel: channel.as_str(),
            word,
        }),
        None => Ok(()),
    }
}

/// The link a staff SMS carries: the acknowledgement link when there is
/// one, else the case page.
fn sms_link(facts: &impl NotificationFacts) -> &str {
    match facts.ack_link() {
        "" => facts.case_link(),
        ack => ack,
    }
}

fn staff_params(
    locale: Locale,
    facts: &impl NotificationFacts,
    link_to: &str,
) -> Result<Vec<(&'static str, String)>, TemplateError> {
    Ok(vec![
        ("school", plain_text("school", facts.school_name(), 40)?),
        ("case_ref", case_reference(facts.case_reference())?),
        ("level", facts.level().words(locale).to_owned()),
        ("link", link(link_to)?),
        ("time", format_time(facts.occurred_at())),
    ])
}

fn guardian_params(
    facts: &impl NotificationFacts,
) -> Result<Vec<(&'static str, String)>, TemplateError> {
    Ok(vec![
        ("school", plain_text("school", facts.school_name(), 40)?),
        (
            "counsellor",
            plain_text("counsellor", facts.counsellor_display_name(), 20)?,
        ),
        ("counsellor_phone", phone(facts.counsellor_phone())?),
        ("case_ref", case_reference(facts.case_reference())?),
        ("time", format_time(facts.occurred_at())),
    ])
}

fn format_time(at: DateTime<FixedOffset>) -> String {
    at.format("%Y-%m-%d %H:%M").to_string()
}

fn plain_text(field: &'static str, value: &str, max_chars: usize) -> Result<String, TemplateError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max_chars {
        return Err(TemplateError::InvalidField {
            field,
            rule: "must be non-empty and short",
        });
    }
    if value.chars().any(char::is_control) {
        return Err(TemplateError::InvalidField {
            field,
            rule: "must be a single line without control characters",
        });
    }
    Ok(value.to_owned())
}

/// `C-` followed by 4–16 Crockford base32 characters (no I, L, O, U).
fn case_reference(value: &str) -> Result<String, TemplateError> {
    let invalid = TemplateError::InvalidField {
        field: "case_ref",
        rule: "must be an opaque reference like C-7F3K2Q",
    };
    let Some(code) = value.strip_prefix("C-") else {
        return Err(invalid);
    };
    let crockford = |c: char| c.is_ascii_digit() || (c.is_ascii_uppercase() && !"ILOU".contains(c));
    if !(4..=16).contains(&code.len()) || !code.chars().all(crockford) {
        return Err(invalid);
    }
    Ok(value.to_owned())
}

fn link(value: &str) -> Result<String, TemplateError> {
    let invalid = TemplateError::InvalidField {
        field: "link",
        rule: "must be an http(s) URL without spaces, at most 512 characters",
    };
    if value.len() > 512 || value.chars().any(char::is_whitespace) {
        return Err(invalid);
    }
    match url::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "https" | "http") && url.host().is_some() => {
            Ok(value.to_owned())
        }
        _ => Err(invalid),
    }
}

fn phone(value: &str) -> Result<String, TemplateError> {
    let value = value.trim();
    let digits = value.chars().filter(char::is_ascii_digit).count();
    let allowed = value
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | ' '));
    if !allowed || !(3..=16).contains(&digits) {
        return Err(TemplateError::InvalidField {
            field: "counsellor_phone",
            rule: "must be a phone number (digits, +, -, spaces)",
        });
    }
    Ok(value.to_owned())
}

fn template_name(
    channel: Channel,
    audience: Audience,
    locale: Locale,
    part: Option<&str>,
) -> String {
    match part {
        Some(part) => format!("{}/{}.{}.{}", channel.as_str(), audience, locale, part),
        None => format!("{}/{}.{}", channel.as_str(), audience, locale),
    }
}

fn render(name: &str, params: &[(&'static str, String)]) -> Result<String, TemplateError> {
    // Only this audience's parameters are in the context, and undefined
    // behaviour is strict: a template naming anything else fails instead of
    // rendering blank.
    let ctx: BTreeMap<Value, String> = params
        .iter()
        .map(|(name, value)| (Value::from(*name), value.clone()))
        .collect();
    let env = environment()?;
    Ok(env.get_template(name)?.render(Value::from(ctx))?)
}

static ENVIRONMENT: OnceLock<Environment<'static>> = OnceLock::new();

fn environment() -> Result<&'static Environment<'static>, TemplateError> {
    if let Some(env) = ENVIRONMENT.get() {
        return Ok(env);
    }
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    for (name, source) in TEMPLATES {
        env.add_template(name, source)?;
    }
    Ok(ENVIRONMENT.get_or_init(|| env))
}

/// Every template: `(name, source)`. Names are `<channel>/<audience>.<locale>[.<part>]`.
pub(crate) const TEMPLATES: &[(&str, &str)] = &[
    (
        "sms/staff.zh-CN",
        "{{ school }}：个案 {{ case_ref }} 待处理，级别 {{ level }}，时间 {{ time }}。回复1确认，或打开：{{ link }}",
    ),
    (
        "sms/staff.en",
        "{{ school }}: case {{ case_ref }} needs attention, level {{ level }}, at {{ time }}. Reply 1 to acknowledge, or open: {{ link }}",
    ),
    (
        "im/staff.zh-CN",
        "【三预】{{ school }}：个案 {{ case_ref }} 待处理，级别 {{ level }}，时间 {{ time }}。打开链接确认并查看：{{ link }}",
    ),
    (
        "im/staff.en",
        "[Sanyu] {{ school }}: case {{ case_ref }} needs attention, level {{ level }}, at {{ time }}. Open to acknowledge and review: {{ link }}",
    ),
    (
        "sms/guardian.zh-CN",
        "{{ school }}：{{ counsellor }}希望尽快与您通话，请致电 {{ counsellor_phone }}，并告知编号 {{ case_ref }}（{{ time }}）。",
    ),
    (
        "sms/guardian.en",
        "{{ school }}: {{ counsellor }} would like to speak with you soon. Please call {{ counsellor_phone }} and quote reference {{ case_ref }} ({{ time }}).",
    ),
    (
        "sms/sign_in.zh-CN",
        "三预登录验证码：{{ code }}，{{ minutes }} 分钟内有效，只能使用一次。如非本人操作，请忽略。",
    ),
    (
        "sms/sign_in.en",
        "Sanyu sign-in code: {{ code }}. Valid for {{ minutes }} minutes, once. If you did not ask for it, ignore this message.",
    ),
    (
        "sms/ack_reply.zh-CN",
        "三预：{% if outcome == 'confirmed' %}个案 {{ case_ref }} 已由您确认，预警升级已停止。{% elif outcome == 'ambiguous' %}您有多个待确认个案（{{ refs }}），请回复个案编号确认，未作更改。{% elif outcome == 'already_acknowledged' %}个案 {{ case_ref }} 已被确认，未作更改。{% elif outcome == 'not_allowed' %}您无权确认该个案，未作更改。{% elif outcome == 'no_case' %}没有找到发给您的待确认个案，未作更改。{% else %}无法识别您的回复，未作更改。请回复1或个案编号。{% endif %}",
    ),
    (
        "sms/ack_reply.en",
        "Sanyu: {% if outcome == 'confirmed' %}you acknowledged case {{ case_ref }}; its escalation has stopped.{% elif outcome == 'ambiguous' %}several cases wait for you ({{ refs }}); reply with a case reference. Nothing changed.{% elif outcome == 'already_acknowledged' %}case {{ case_ref }} was acknowledged already. Nothing changed.{% elif outcome == 'not_allowed' %}you may not acknowledge that case. Nothing changed.{% elif outcome == 'no_case' %}no unacknowledged case sent to you was found. Nothing changed.{% else %}your reply was not understood. Nothing changed. Reply 1 or a case reference.{% endif %}",
    ),
    (
        "sms/digest.zh-CN",
        "{{ school }}：{{ count }} 个个案待处理，最高级别 {{ level }}：{{ refs }}。请打开待处理列表：{{ link }}",
    ),
    (
        "sms/digest.en",
        "{{ school }}: {{ count }} cases need attention, highest level {{ level }}: {{ refs }}. Open the queue: {{ link }}",
    ),
    (
        "im/digest.zh-CN",
        "【三预】{{ school }}：{{ count }} 个个案待处理，最高级别 {{ level }}：\n{{ refs }}\n打开待处理列表查看：{{ link }}",
    ),
    (
        "im/digest.en",
        "[Sanyu] {{ school }}: {{ count }} cases need attention, highest level {{ level }}:\n{{ refs }}\nOpen the queue to review them: {{ link }}",
    ),
    (
        "email/digest.zh-CN.subject",
        "【汇总】{{ count }} 个个案待处理（最高 {{ level }}）· {{ school }}",
    ),
    (
        "email/digest.zh-CN.body",
        "您好：\n\n{{ school }} 有 {{ count }} 个个案需要处理，汇总如下（紧急个案不会汇总，总是立即单独通知）。\n\n{{ refs }}\n\n待处理列表：\n{{ link }}\n\n本邮件不含学生的任何信息，详情只在系统内可见。请勿转发。\n",
    ),
    (
        "email/digest.en.subject",
        "[Summary] {{ count }} cases need attention (highest: {{ level }}) · {{ school }}",
    ),
    (
        "email/digest.en.body",
        "Hello,\n\n{{ count }} cases at {{ school }} need attention, listed together here (a critical case is never listed in a summary: it is always sent at once, on its own).\n\n{{ refs }}\n\nThe queue:\n{{ link }}\n\nThis email contains no information about the student; details are visible only after signing in. Please do not forward it.\n",
    ),
    (
        "email/staff.zh-CN.subject",
        "【{{ level }}】个案 {{ case_ref }} 待处理 · {{ school }}",
    ),
    (
        "email/staff.zh-CN.body",
        "您好：\n\n{{ school }} 有一个预警个案需要处理。\n\n个案编号：{{ case_ref }}\n级别：{{ level }}\n时间：{{ time }}\n\n请登录系统查看并处理：\n{{ link }}\n{% if ack_link %}\n确认已收到（打开后点击“确认”按钮）：\n{{ ack_link }}\n{% endif %}\n本邮件不含学生的任何信息，详情只在系统内可见。请勿转发。\n",
    ),
    (
        "email/staff.en.subject",
        "[{{ level }}] Case {{ case_ref }} needs attention · {{ school }}",
    ),
    (
        "email/staff.en.body",
        "Hello,\n\nA case at {{ school }} needs attention.\n\nCase reference: {{ case_ref }}\nLevel: {{ level }}\nTime: {{ time }}\n\nSign in to review it:\n{{ link }}\n{% if ack_link %}\nAcknowledge it (open, then press the button):\n{{ ack_link }}\n{% endif %}\nThis email contains no information about the student; details are visible only after signing in. Please do not forward it.\n",
    ),
];

#[cfg(test)]
mod tests;
