#![allow(clippy::unwrap_used)]
use super::*;

/// The facts of a case, with the values most tests use ([`facts`]).
struct Facts {
    case_ref: &'static str,
    level: AlertLevel,
    link: &'static str,
    counsellor: &'static str,
    counsellor_phone: &'static str,
}

fn facts() -> Facts {
    Facts {
        case_ref: "C-7F3K2Q",
        level: AlertLevel::Critical,
        link: "https://sanyu.example.edu.cn/cases/C-7F3K2Q",
        counsellor: "王老师",
        counsellor_phone: "010-6275 1234",
    }
}

impl NotificationFacts for Facts {
    fn school_name(&self) -> &str {
        "第一中学"
    }
    fn case_reference(&self) -> &str {
        self.case_ref
    }
    fn level(&self) -> AlertLevel {
        self.level
    }
    fn case_link(&self) -> &str {
        self.link
    }
    fn occurred_at(&self) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339("2025-03-01T14:05:00+08:00").unwrap()
    }
    fn counsellor_display_name(&self) -> &str {
        self.counsellor
    }
    fn counsellor_phone(&self) -> &str {
        self.counsellor_phone
    }
}

#[test]
fn staff_sms_in_chinese_names_the_level_in_words() {
    let sms = render_sms(Audience::Staff, Locale::ZhCn, &facts()).unwrap();
    assert_eq!(
        sms.text,
        "第一中学：个案 C-7F3K2Q 待处理，级别 一级（紧急），时间 2025-03-01 14:05。回复1确认，或打开：https://sanyu.example.edu.cn/cases/C-7F3K2Q"
    );
    assert_eq!(sms.param("level"), Some("一级（紧急）"));
    assert_eq!(sms.template_name(), "staff.zh-CN");
}

#[test]
fn a_staff_im_message_has_the_sms_facts_and_the_link_but_no_reply_hint() {
    let zh = render_staff_im(Locale::ZhCn, &facts()).unwrap();
    assert_eq!(
        zh,
        "【三预】第一中学：个案 C-7F3K2Q 待处理，级别 一级（紧急），时间 2025-03-01 14:05。打开链接确认并查看：https://sanyu.example.edu.cn/cases/C-7F3K2Q"
    );
    let en = render_staff_im(Locale::En, &facts()).unwrap();
    assert!(
        en.contains("C-7F3K2Q") && en.ends_with("https://sanyu.example.edu.cn/cases/C-7F3K2Q"),
        "{en}"
    );
    assert!(!en.to_lowercase().contains("reply"), "{en}");
}

#[test]
fn guardian_sms_has_the_counsellor_and_no_level() {
    let sms = render_sms(Audience::Guardian, Locale::ZhCn, &facts()).unwrap();
    assert_eq!(
        sms.text,
        "第一中学：王老师希望尽快与您通话，请致电 010-6275 1234，并告知编号 C-7F3K2Q（2025-03-01 14:05）。"
    );
    assert_eq!(sms.param("level"), None);
    let names: Vec<&str> = sms.params.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, Audience::Guardian.param_names());
}

#[test]
fn staff_email_has_subject_and_body_in_both_locales() {
    let zh = render_staff_email(Locale::ZhCn, &facts()).unwrap();
    assert_eq!(
        zh.subject,
        "【一级（紧急）】个案 C-7F3K2Q 待处理 · 第一中学"
    );
    assert!(
        zh.body
            .contains("https://sanyu.example.edu.cn/cases/C-7F3K2Q")
    );
    let en = render_staff_email(Locale::En, &facts()).unwrap();
    assert_eq!(
        en.subject,
        "[critical] Case C-7F3K2Q needs attention · 第一中学"
    );
}

#[test]
fn a_case_reference_that_is_not_opaque_is_refused() {
    let named = Facts {
        case_ref: "张三",
        level: AlertLevel::High,
        link: "https://sanyu.example.edu.cn/",
        counsellor_phone: "13800138000",
        ..facts()
    };
    for audience in Audience::ALL {
        let err = render_sms(audience, Locale::ZhCn, &named).unwrap_err();
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
}

#[test]
fn a_counsellor_title_with_a_denied_word_stops_the_guardian_sms() {
    let titled = Facts {
        level: AlertLevel::High,
        link: "https://sanyu.example.edu.cn/",
        counsellor: "心理老师王老师",
        counsellor_phone: "13800138000",
        ..facts()
    };
    let err = render_sms(Audience::Guardian, Locale::ZhCn, &titled).unwrap_err();
    assert!(
        matches!(err, TemplateError::DeniedWord { word: "心理", .. }),
        "{err}"
    );
}

#[test]
fn a_random_reference_that_happens_to_spell_a_denied_word_still_renders() {
    let unlucky = |case_ref| Facts {
        case_ref,
        link: "https://sanyu.example.edu.cn/v1/cases/01a2276b-00e9-71ca-882e-34b7db0768ac",
        counsellor_phone: "13800138000",
        ..facts()
    };
    for reference in ["C-7PHQ2K", "C-GAD7XY"] {
        for audience in Audience::ALL {
            let sms = render_sms(audience, Locale::ZhCn, &unlucky(reference)).unwrap();
            assert!(sms.text.contains(reference));
        }
        let email = render_staff_email(Locale::En, &unlucky(reference)).unwrap();
        assert!(email.subject.contains(reference));
    }
}

#[test]
fn rendered_sms_debug_shows_no_values() {
    let sms = render_sms(Audience::Guardian, Locale::ZhCn, &facts()).unwrap();
    let shown = format!("{sms:?}");
    assert!(!shown.contains("王老师"));
    assert!(!shown.contains("6275"));
    assert!(shown.contains("counsellor_phone"));
}

#[test]
fn the_sign_in_sms_carries_the_code_and_nothing_about_a_case() {
    for locale in Locale::ALL {
        let sms = render_sign_in_sms(locale, "042917", 10).unwrap();
        assert_eq!(sms.audience, Audience::SignIn);
        assert_eq!(sms.template_name(), format!("sign_in.{locale}"));
        assert!(sms.text.contains("042917"), "{}", sms.text);
        assert!(sms.text.contains("10"), "{}", sms.text);
        assert_eq!(sms.param("code"), Some("042917"));
        let names: Vec<&str> = sms.params.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, Audience::SignIn.param_names());
        let lower = sms.text.to_lowercase();
        for word in denied_words(Audience::Guardian) {
            assert!(!lower.contains(word), "{locale}: {word}");
        }
        assert!(!sms.text.contains("http"), "no link in a code SMS");
    }
}

#[test]
fn a_sign_in_sms_refuses_what_is_not_a_code() {
    for bad in ["", "12", "12345678901", "12a456", "１２３４５６"] {
        let err = render_sign_in_sms(Locale::ZhCn, bad, 10).unwrap_err();
        assert!(
            matches!(err, TemplateError::InvalidField { field: "code", .. }),
            "{bad}: {err}"
        );
    }
    assert!(render_sign_in_sms(Locale::ZhCn, "123456", 0).is_err());
    // Case facts never render as a sign-in message.
    assert!(matches!(
        render_sms(Audience::SignIn, Locale::ZhCn, &facts()).unwrap_err(),
        TemplateError::InvalidField {
            field: "audience",
            ..
        }
    ));
}

#[test]
fn every_reply_answer_renders_its_own_words_with_references_only() {
    for locale in Locale::ALL {
        let mut seen = std::collections::HashSet::new();
        for outcome in AckReplyOutcome::ALL {
            let refs = vec!["C-7F3K2Q".to_owned(), "C-9ZZZ1A".to_owned()];
            let sms = render_ack_reply_sms(locale, outcome, Some("C-7F3K2Q"), &refs).unwrap();
            assert_eq!(sms.audience, Audience::AckReply);
            assert!(seen.insert(sms.text.clone()), "{locale} {outcome:?}");
            assert!(!sms.text.contains("http"), "no link in a reply answer");
            let names: Vec<&str> = sms.params.iter().map(|(n, _)| *n).collect();
            assert_eq!(names, Audience::AckReply.param_names());
            match outcome {
                AckReplyOutcome::Confirmed | AckReplyOutcome::AlreadyAcknowledged => {
                    assert!(sms.text.contains("C-7F3K2Q"), "{}", sms.text)
                }
                AckReplyOutcome::Ambiguous => {
                    assert!(sms.text.contains("C-9ZZZ1A"), "{}", sms.text)
                }
                _ => {}
            }
        }
    }
    assert!(
        render_ack_reply_sms(Locale::ZhCn, AckReplyOutcome::Confirmed, Some("张三"), &[]).is_err()
    );
}

/// Facts whose acknowledgement link's random token spells denied words.
struct WithAckLink(Facts);

impl NotificationFacts for WithAckLink {
    fn school_name(&self) -> &str {
        self.0.school_name()
    }
    fn case_reference(&self) -> &str {
        self.0.case_reference()
    }
    fn level(&self) -> AlertLevel {
        self.0.level()
    }
    fn case_link(&self) -> &str {
        self.0.case_link()
    }
    fn ack_link(&self) -> &str {
        "https://sanyu.example.edu.cn/a/x7gad7qphq9upi2scl90k"
    }
    fn occurred_at(&self) -> DateTime<FixedOffset> {
        self.0.occurred_at()
    }
    fn counsellor_display_name(&self) -> &str {
        self.0.counsellor_display_name()
    }
    fn counsellor_phone(&self) -> &str {
        self.0.counsellor_phone()
    }
}

/// Found by a failing end-to-end run: the leader's email was refused for
/// `gad7` in the random token of its acknowledgement link, and nothing was
/// sent. A generated link is not text a person wrote.
#[test]
fn a_random_acknowledgement_token_that_spells_a_denied_word_never_stops_a_notice() {
    let facts = WithAckLink(facts());
    let sms = render_sms(Audience::Staff, Locale::ZhCn, &facts).unwrap();
    assert!(sms.text.contains("x7gad7qphq9upi2scl90k"), "{}", sms.text);
    let email = render_staff_email(Locale::ZhCn, &facts).unwrap();
    assert!(
        email.body.contains("x7gad7qphq9upi2scl90k"),
        "{}",
        email.body
    );
    let im = render_staff_im(Locale::En, &facts).unwrap();
    assert!(im.contains("x7gad7qphq9upi2scl90k"), "{im}");
    // The deny-list still reads the rest: a school named after an instrument
    // is refused.
    assert!(
        check_privacy(
            Audience::Staff,
            Channel::Sms,
            &mask_generated("PHQ9 中学 LINK", &[])
        )
        .is_err()
    );
}

fn digest_of<'a>(school: &'a str, refs: &'a [&'a str], links: &'a [String]) -> DigestFacts<'a> {
    DigestFacts {
        school,
        entries: refs
            .iter()
            .zip(links)
            .enumerate()
            .map(|(i, (r, link))| DigestEntry {
                case_ref: r,
                level: if i == 1 {
                    AlertLevel::High
                } else {
                    AlertLevel::Elevated
                },
                link,
                what: "新的个案 / new case",
            })
            .collect(),
        queue_link: "https://sanyu.example.edu.cn/queue",
    }
}

fn links(refs: &[&str]) -> Vec<String> {
    refs.iter()
        .map(|r| format!("https://sanyu.example.edu.cn/cases/{r}"))
        .collect()
}

#[test]
fn a_digest_sms_gives_the_count_the_highest_level_the_first_references_and_the_queue() {
    // Random references may spell a denied word: they are masked, not refused.
    let refs = ["C-7F3K2Q", "C-PHQ9XY", "C-GAD7AB", "C-4444", "C-5555"];
    let links = links(&refs);
    let sms = render_digest_sms(Locale::ZhCn, &digest_of("第一中学", &refs, &links)).unwrap();
    assert_eq!(sms.audience, Audience::Digest);
    assert_eq!(sms.template_name(), "digest.zh-CN");
    let names: Vec<&str> = sms.params.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, Audience::Digest.param_names());
    assert_eq!(sms.param("count"), Some("5"));
    assert_eq!(sms.param("level"), Some("二级（高）"));
    assert_eq!(sms.param("refs"), Some("C-7F3K2Q、C-PHQ9XY、C-GAD7AB、…"));
    assert_eq!(
        sms.param("link"),
        Some("https://sanyu.example.edu.cn/queue")
    );
    assert!(sms.text.contains("5 个个案待处理"), "{}", sms.text);
    assert!(!sms.text.contains("C-4444"));
    let en = render_digest_sms(Locale::En, &digest_of("No. 1 School", &refs[..2], &links)).unwrap();
    assert_eq!(en.param("refs"), Some("C-7F3K2Q, C-PHQ9XY"));
}

#[test]
fn a_digest_email_and_im_list_every_reference_and_a_digest_is_never_empty() {
    let refs: Vec<String> = (0..25).map(|i| format!("C-{:04}", 1000 + i)).collect();
    let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
    let links = links(&refs);
    let digest = digest_of("第一中学", &refs, &links);
    let email = render_digest_email(Locale::ZhCn, &digest).unwrap();
    assert!(email.subject.contains("25"), "{}", email.subject);
    for (r, link) in refs.iter().zip(&links) {
        assert!(email.body.contains(r), "{r}");
        assert!(email.body.contains(link.as_str()), "{link}");
    }
    let im = render_digest_im(Locale::En, &digest).unwrap();
    assert!(im.contains("C-1019") && !im.contains("C-1020"), "{im}");
    assert!(im.contains("25 cases"), "{im}");
    let empty = DigestFacts {
        school: "第一中学",
        entries: vec![],
        queue_link: "https://sanyu.example.edu.cn/queue",
    };
    assert!(render_digest_sms(Locale::ZhCn, &empty).is_err());
}

#[test]
fn a_digest_obeys_the_deny_list_and_the_field_rules() {
    let refs = ["C-7F3K2Q"];
    let links = links(&refs);
    // A school name that says what the message is about.
    let err = render_digest_sms(Locale::ZhCn, &digest_of("心理中心", &refs, &links)).unwrap_err();
    assert!(matches!(err, TemplateError::DeniedWord { .. }), "{err:?}");
    // A line about the notice that names an instrument.
    let mut digest = digest_of("第一中学", &refs, &links);
    digest.entries[0].what = "PHQ-9 result";
    let err = render_digest_email(Locale::En, &digest).unwrap_err();
    assert!(matches!(err, TemplateError::DeniedWord { .. }), "{err:?}");
    // Not a reference.
    let bad = ["Zhang San"];
    let err = render_digest_sms(Locale::ZhCn, &digest_of("第一中学", &bad, &links)).unwrap_err();
    assert!(
        matches!(
            err,
            TemplateError::InvalidField {
                field: "case_ref",
                ..
            }
        ),
        "{err:?}"
    );
}
