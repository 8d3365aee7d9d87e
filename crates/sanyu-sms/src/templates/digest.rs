//! Digests (issue 16): several non-critical notices to one staff member in
//! one message — how many, the highest level, the references, the queue's
//! link — checked like a case alert (the deny-list, the field rules).

use super::{
    AlertLevel, Audience, Channel, Locale, RenderedEmail, RenderedSms, TemplateError,
    case_reference, check_privacy, link, mask_reference, plain_text, render, template_name,
};

/// One notice of a digest: its case reference, level and link, and what it
/// is about (a fixed line of the caller's, never data).
#[derive(Debug, Clone, Copy)]
pub struct DigestEntry<'a> {
    pub case_ref: &'a str,
    pub level: AlertLevel,
    pub link: &'a str,
    pub what: &'a str,
}

/// What a digest may say: the school, its notices, and the link to the
/// queue. Nothing else about a case or a student.
#[derive(Debug, Clone)]
pub struct DigestFacts<'a> {
    pub school: &'a str,
    pub entries: Vec<DigestEntry<'a>>,
    pub queue_link: &'a str,
}

/// References an SMS digest lists (the count says how many there are).
const DIGEST_SMS_REFS: usize = 3;
/// References a work-IM digest lists.
const DIGEST_IM_REFS: usize = 20;

impl DigestFacts<'_> {
    /// The parameters of a digest listing the first `refs` references (with
    /// `…` when there are more): checked like a case alert's.
    fn params(
        &self,
        locale: Locale,
        refs: usize,
        separator: &str,
    ) -> Result<Vec<(&'static str, String)>, TemplateError> {
        let level = self
            .entries
            .iter()
            .map(|e| e.level)
            .max_by_key(|l| match l {
                AlertLevel::Elevated => 0,
                AlertLevel::High => 1,
                AlertLevel::Critical => 2,
            })
            .ok_or(TemplateError::InvalidField {
                field: "entries",
                rule: "a digest lists at least one notice",
            })?;
        let mut listed = self
            .entries
            .iter()
            .take(refs)
            .map(|e| case_reference(e.case_ref))
            .collect::<Result<Vec<_>, _>>()?
            .join(separator);
        if self.entries.len() > refs {
            listed.push_str(separator);
            listed.push('…');
        }
        Ok(vec![
            ("school", plain_text("school", self.school, 40)?),
            ("count", self.entries.len().to_string()),
            ("level", level.words(locale).to_owned()),
            ("refs", listed),
            ("link", link(self.queue_link)?),
        ])
    }

    /// `text` with every reference and link masked (they are opaque or
    /// generated), for the deny-list.
    fn masked(&self, text: &str) -> Result<String, TemplateError> {
        let mut masked = text.replace(self.queue_link, "LINK");
        for e in &self.entries {
            if !e.link.is_empty() {
                masked = masked.replace(&link(e.link)?, "LINK");
            }
            masked = mask_reference(&masked, &case_reference(e.case_ref)?);
        }
        Ok(masked)
    }
}

/// Renders the SMS of a digest: school, how many, the highest level, the
/// first references and the queue's link (an approved template of audience
/// `digest` at Alibaba Cloud and Tencent Cloud).
pub fn render_digest_sms(
    locale: Locale,
    digest: &DigestFacts<'_>,
) -> Result<RenderedSms, TemplateError> {
    let audience = Audience::Digest;
    let separator = if locale == Locale::ZhCn { "、" } else { ", " };
    let params = digest.params(locale, DIGEST_SMS_REFS, separator)?;
    let text = render(
        &template_name(Channel::Sms, audience, locale, None),
        &params,
    )?;
    check_privacy(audience, Channel::Sms, &digest.masked(&text)?)?;
    Ok(RenderedSms {
        audience,
        locale,
        text,
        params,
    })
}

/// Renders the work-IM message of a digest: as the SMS, with up to 20
/// references, one per line.
pub fn render_digest_im(locale: Locale, digest: &DigestFacts<'_>) -> Result<String, TemplateError> {
    let params = digest.params(locale, DIGEST_IM_REFS, "\n")?;
    let text = render(
        &template_name(Channel::Im, Audience::Digest, locale, None),
        &params,
    )?;
    check_privacy(Audience::Digest, Channel::Im, &digest.masked(&text)?)?;
    Ok(text)
}

/// Renders the email of a digest: every notice on a line of its own, with
/// its reference, level, what it is about and its link.
pub fn render_digest_email(
    locale: Locale,
    digest: &DigestFacts<'_>,
) -> Result<RenderedEmail, TemplateError> {
    let mut params = digest.params(locale, 0, "")?;
    let mut lines = Vec::with_capacity(digest.entries.len());
    for e in &digest.entries {
        lines.push(format!(
            "· {} · {} · {}\n  {}",
            case_reference(e.case_ref)?,
            e.level.words(locale),
            plain_text("what", e.what, 200)?,
            link(e.link)?
        ));
    }
    if let Some(refs) = params.iter_mut().find(|(n, _)| *n == "refs") {
        refs.1 = lines.join("\n");
    }
    let subject = render(
        &template_name(Channel::Email, Audience::Digest, locale, Some("subject")),
        &params,
    )?;
    let body = render(
        &template_name(Channel::Email, Audience::Digest, locale, Some("body")),
        &params,
    )?;
    check_privacy(Audience::Digest, Channel::Email, &digest.masked(&subject)?)?;
    check_privacy(Audience::Digest, Channel::Email, &digest.masked(&body)?)?;
    Ok(RenderedEmail {
        locale,
        subject,
        body,
    })
}
