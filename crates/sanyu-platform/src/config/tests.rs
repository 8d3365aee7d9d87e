use super::*;

#[test]
fn secrets_never_print() {
    let mut c = Config::default();
    c.security.data_key = Secret::new("super-secret-key");
    c.database.url = Secret::new("postgres://user:pw@db/sanyu");
    c.sms.receipt_path_secret = Secret::new("receipt-path-secret");
    let shown = format!("{c:?}");
    assert!(!shown.contains("super-secret-key"));
    assert!(!shown.contains("pw@db"));
    assert!(!shown.contains("receipt-path-secret"));
}

#[test]
fn the_deploy_example_is_a_valid_configuration() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/sanyu.example.toml"
    );
    let c: Config = Figment::from(Serialized::defaults(Config::default()))
        .merge(Toml::file_exact(path))
        .extract()
        .map_err(|e| e.to_string())
        .expect("deploy/sanyu.example.toml parses");
    assert_eq!(c.notify.quiet_hours.end, "07:00");
    assert_eq!(
        c.notify.channels.elevated,
        vec![NotifyChannel::Email, NotifyChannel::Im]
    );
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail API returns its own error type
fn sms_providers_and_notify_policy_come_from_the_environment() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("SANYU_SMS__PRIMARY__KIND", "webhook");
        jail.set_env("SANYU_SMS__PRIMARY__URL", "http://127.0.0.1:9/sms");
        jail.set_env("SANYU_SMS__PRIMARY__SECRET", "whsec-primary");
        jail.set_env("SANYU_NOTIFY__CHANNELS__HIGH", "[\"email\"]");
        jail.set_env("SANYU_NOTIFY__QUIET_HOURS__START", "21:30");
        let c = Config::load().map_err(|e| e.to_string())?;
        assert!(matches!(
            c.sms.primary,
            Some(sanyu_sms::ProviderConfig::Webhook(_))
        ));
        assert!(c.sms.secondary.is_none());
        assert_eq!(c.notify.channels.high, vec![NotifyChannel::Email]);
        assert_eq!(
            c.notify.channels.critical,
            vec![
                NotifyChannel::Sms,
                NotifyChannel::Voice,
                NotifyChannel::Im,
                NotifyChannel::Email
            ]
        );
        assert_eq!(c.notify.quiet_hours.start, "21:30");
        assert!(!format!("{c:?}").contains("whsec-primary"));
        Ok(())
    });
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail API returns its own error type
fn environment_overrides_defaults() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("SANYU_NATS__URL", "tls://10.0.0.1:4222");
        jail.set_env("SANYU_HTTP__BODY_LIMIT_BYTES", "1024");
        jail.set_env("SANYU_TEST_PG_URL", "postgres://ignored");
        jail.set_env("SANYU_SCREENING__XLSX__MAX_CELLS", "5000");
        let c = Config::load().map_err(|e| e.to_string())?;
        assert_eq!(c.nats.url, "tls://10.0.0.1:4222");
        assert_eq!(c.screening.xlsx.max_cells, 5000);
        assert_eq!(c.http.body_limit_bytes, 1024);
        assert_eq!(c.nats.max_deliver, 8);
        assert!(c.sms.primary.is_none());
        Ok(())
    });
}

#[test]
fn the_sample_configuration_is_complete_and_matches_the_defaults() {
    let sample = include_str!("../../../../deploy/sanyu.example.toml");
    let parsed: Config = Figment::from(Toml::string(sample))
        .extract()
        .expect("deploy/sanyu.example.toml parses with every key known");
    assert_eq!(parsed.escalation, sanyu_domain::EscalationPolicy::default());
    assert_eq!(
        parsed.zero_report.reminder_offsets_secs,
        sanyu_domain::zero_report::Calendar::default().reminder_offsets_secs
    );
    assert_eq!(
        serde_json::to_value(&parsed.scheduler).ok(),
        serde_json::to_value(SchedulerConfig::default()).ok()
    );
    assert_eq!(
        parsed.screening.xlsx,
        sanyu_screening::XlsxLimits::default()
    );
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail closure returns figment::Error
fn a_ladder_is_set_from_the_environment_and_a_bad_one_is_refused() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("SANYU_ESCALATION__CRITICAL__ACK_WITHIN_SECS", "3");
        jail.set_env(
            "SANYU_ESCALATION__CRITICAL__RUNGS",
            r#"[{after_secs=3, roles=["leader"]}]"#,
        );
        let c = Config::load().map_err(|e| e.to_string())?;
        assert_eq!(c.escalation.critical.ack_within_secs, 3);
        assert_eq!(c.escalation.critical.rungs.len(), 1);
        jail.set_env(
            "SANYU_ESCALATION__HIGH__RUNGS",
            r#"[{after_secs=3, roles=["teacher"]}]"#,
        );
        let err = Config::load().expect_err("a teacher is never on a ladder");
        assert!(err.to_string().contains("escalation"), "{err}");
        Ok(())
    });
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail API returns its own error type
fn plaintext_to_another_host_is_refused_at_load_unless_allowed() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("SANYU_NATS__URL", "nats://10.0.0.1:4222");
        let refused = Config::load().expect_err("plaintext NATS to another host");
        assert!(refused.to_string().contains("allow_plaintext"), "{refused}");
        jail.set_env("SANYU_SECURITY__ALLOW_PLAINTEXT", "true");
        let c = Config::load().map_err(|e| e.to_string())?;
        assert!(c.security.allow_plaintext);
        Ok(())
    });
}
