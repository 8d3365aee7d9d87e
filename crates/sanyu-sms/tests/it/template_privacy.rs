//! The canary test: every template, rendered from a case record that *does*
//! hold a student's name, narrative, score and diagnosis, shows none of them
//! and none of the denied words.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, FixedOffset};
use sanyu_sms::templates::denied_words;
use sanyu_sms::{
    AlertLevel, Audience, Locale, NotificationFacts, TemplateError, render_sms, render_staff_email,
};

/// What the notifier may well hold about a case.
struct CaseFacts {
    student_name: String,
    student_id_number: String,
    narrative: String,
    score: String,
    diagnosis: String,
    school: String,
    case_ref: String,
    level: AlertLevel,
    link: String,
    at: DateTime<FixedOffset>,
    counsellor: String,
    counsellor_phone: String,
}

/// Implemented the way a notifier would: the sensitive fields exist but the
/// trait has no method to return them.
impl NotificationFacts for CaseFacts {
    fn school_name(&self) -> &str {
        &self.school
    }
    fn case_reference(&self) -> &str {
        &self.case_ref
    }
    fn level(&self) -> AlertLevel {
        self.level
    }
    fn case_link(&self) -> &str {
        &self.link
    }
    fn occurred_at(&self) -> DateTime<FixedOffset> {
        self.at
    }
    fn counsellor_display_name(&self) -> &str {
        &self.counsellor
    }
    fn counsellor_phone(&self) -> &str {
        &self.counsellor_phone
    }
}

fn canary_case(level: AlertLevel) -> CaseFacts {
    CaseFacts {
        student_name: "CANARY_NAME_7731 张小明".into(),
        student_id_number: "CANARY_ID_110101200801011234".into(),
        narrative: "CANARY_NARRATIVE_5512 她说不想活了，有自杀和自残的念头".into(),
        score: "CANARY_SCORE_PHQ9_27".into(),
        diagnosis: "CANARY_DIAGNOSIS 重度抑郁 焦虑".into(),
        school: "第一中学".into(),
        case_ref: "C-7F3K2Q".into(),
        level,
        link: "https://sanyu.example.edu.cn/cases/C-7F3K2Q".into(),
        at: DateTime::parse_from_rfc3339("2025-03-01T14:05:00+08:00").unwrap(),
        counsellor: "王老师".into(),
        counsellor_phone: "010-62751234".into(),
    }
}

/// Every text a render produces for (audience, locale, level): SMS text and
/// parameter values, and for staff the email subject and body.
fn all_outputs(audience: Audience, locale: Locale, facts: &CaseFacts) -> Vec<(String, String)> {
    let sms = render_sms(audience, locale, facts).unwrap();
    let mut out = vec![(format!("sms/{audience}.{locale}"), sms.text.clone())];
    for (name, value) in &sms.params {
        out.push((
            format!("sms/{audience}.{locale} param {name}"),
            value.clone(),
        ));
    }
    if audience == Audience::Staff {
        let email = render_staff_email(locale, facts).unwrap();
        out.push((format!("email/staff.{locale}.subject"), email.subject));
        out.push((format!("email/staff.{locale}.body"), email.body));
    }
    out
}

#[test]
fn no_template_shows_a_canary_or_a_denied_word_for_any_audience_locale_channel_or_level() {
    let mut rendered = 0;
    for level in AlertLevel::ALL {
        let facts = canary_case(level);
        let secrets = [
            &facts.student_name,
            &facts.student_id_number,
            &facts.narrative,
            &facts.score,
            &facts.diagnosis,
        ];
        for audience in Audience::ALL {
            for locale in Locale::ALL {
                for (which, text) in all_outputs(audience, locale, &facts) {
                    rendered += 1;
                    assert!(!text.contains("CANARY"), "{which} leaks a canary: {text}");
                    for secret in secrets {
                        assert!(!text.contains(secret.as_str()), "{which} leaks {secret}");
                    }
                    assert!(!text.contains("张小明"), "{which} leaks the name");
                    let lower = text.to_lowercase();
                    for word in denied_words(audience) {
                        assert!(!lower.contains(word), "{which} contains `{word}`: {text}");
                    }
                    if audience == Audience::Guardian {
                        assert!(
                            !text.contains(level.words(locale)),
                            "{which} shows the level: {text}"
                        );
                    }
                }
            }
        }
    }
    // 3 levels × (staff: 2 locales × (sms + 5 params + subject + body)
    //           + guardian: 2 locales × (sms + 5 params)).
    assert_eq!(rendered, 3 * (2 * 8 + 2 * 6));
}

#[test]
fn the_allowed_facts_do_reach_the_messages() {
    let facts = canary_case(AlertLevel::High);
    let staff = render_sms(Audience::Staff, Locale::ZhCn, &facts).unwrap();
    for value in [
        "第一中学",
        "C-7F3K2Q",
        "二级（高）",
        "2025-03-01 14:05",
        &facts.link,
    ] {
        assert!(staff.text.contains(value), "staff SMS lacks {value}");
    }
    let guardian = render_sms(Audience::Guardian, Locale::En, &facts).unwrap();
    for value in ["第一中学", "王老师", "010-62751234", "C-7F3K2Q"] {
        assert!(guardian.text.contains(value), "guardian SMS lacks {value}");
    }
    let names: Vec<&str> = guardian.params.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "school",
            "counsellor",
            "counsellor_phone",
            "case_ref",
            "time"
        ]
    );
}

#[test]
fn a_denied_word_smuggled_into_an_allowed_field_stops_every_render() {
    let mut facts = canary_case(AlertLevel::Critical);
    facts.school = "抑郁症防治中学".into();
    for audience in Audience::ALL {
        for locale in Locale::ALL {
            let err = render_sms(audience, locale, &facts).unwrap_err();
            assert!(matches!(err, TemplateError::DeniedWord { .. }), "{err}");
        }
    }
    assert!(matches!(
        render_staff_email(Locale::En, &facts).unwrap_err(),
        TemplateError::DeniedWord { .. }
    ));
}

#[test]
fn a_student_name_passed_as_the_case_reference_is_refused() {
    let mut facts = canary_case(AlertLevel::Elevated);
    facts.case_ref = facts.student_name.clone();
    let err = render_sms(Audience::Guardian, Locale::ZhCn, &facts).unwrap_err();
    assert!(
        matches!(
            err,
            TemplateError::InvalidField {
                field: "case_ref",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_narrative_passed_as_the_link_is_refused() {
    let mut facts = canary_case(AlertLevel::Elevated);
    facts.link = facts.narrative.clone();
    let err = render_sms(Audience::Staff, Locale::ZhCn, &facts).unwrap_err();
    assert!(
        matches!(err, TemplateError::InvalidField { field: "link", .. }),
        "{err}"
    );
}
