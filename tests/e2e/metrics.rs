//! Prometheus metrics an operator can watch: every service serves `/metrics`
//! on its internal health listener (never on the public API port); after a
//! report has gone through the chain the scrape shows HTTP latency by route
//! template, the delivery by channel and outcome, the ladder running, the
//! outbox drained and each consumer's lag — and no id, student number or
//! narrative. The alert rules in `deploy/prometheus/` pass `promtool check
//! rules` (or, without promtool, every metric they and the Grafana dashboard
//! name is one the services export).

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use sanyu_e2e::Stack;
use sanyu_e2e::support::{TestDb, eventually, free_port, workspace_root};

async fn scrape(http: &reqwest::Client, port: u16) -> Option<String> {
    let r = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.text().await.ok()
}

/// The value of the sample whose line starts with `series` (name and labels
/// exactly as rendered).
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.starts_with(name)
                && l[name.len()..].starts_with(['{', ' '])
                && labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Metric names (`sanyu_…`) a text mentions, without histogram suffixes.
fn sanyu_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("sanyu_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        names.insert(base.to_owned());
        rest = &tail[end..];
    }
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn services_export_what_the_alert_rules_watch_and_nothing_about_a_student() {
    let (gateway_port, notifier_port, rules_port) = (free_port(), free_port(), free_port());
    let mut stack = Stack::new(TestDb::sqlite()).await;
    stack
        .start_gateway_with(&[("SANYU_HEALTH__LISTEN", format!("127.0.0.1:{gateway_port}"))])
        .await;
    stack.start_rules(&[("SANYU_HEALTH__LISTEN", format!("127.0.0.1:{rules_port}"))]);
    stack.start_notifier_with(&[("SANYU_HEALTH__LISTEN", format!("127.0.0.1:{notifier_port}"))]);
    stack.start_scheduler(&[]);

    let r = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body("S1", "high", "METRICS-CANARY"),
        )
        .await;
    assert_eq!(r.status(), 202);
    let cases = stack.wait_for_cases(1).await;
    let case_id = cases[0]["id"].as_str().expect("id").to_owned();
    let reference = cases[0]["reference"]
        .as_str()
        .expect("reference")
        .to_owned();
    let r = stack
        .get(&stack.school.counsellor, &format!("/v1/cases/{case_id}"))
        .await;
    assert_eq!(r.status(), 200);
    stack.smtp.wait_for(1, Duration::from_secs(30)).await;

    // The public API port does not serve metrics.
    let public = stack
        .http
        .get(format!("{}/metrics", stack.base_url()))
        .send()
        .await
        .expect("GET /metrics on the API port");
    assert_eq!(public.status(), 404);

    let http = stack.http.clone();
    let notifier = eventually(Duration::from_secs(20), "the email counted", || {
        let http = http.clone();
        async move {
            let text = scrape(&http, notifier_port).await?;
            let sent = sample(
                &text,
                "sanyu_deliveries_total",
                &[
                    ("channel", "email"),
                    ("outcome", "sent"),
                    ("provider", "smtp"),
                ],
            )?;
            (sent >= 1.0).then_some(text)
        }
    })
    .await;
    assert!(
        sample(
            &notifier,
            "sanyu_delivery_duration_seconds_count",
            &[("channel", "email"), ("outcome", "sent")]
        )
        .is_some_and(|n| n >= 1.0),
        "{notifier}"
    );

    let gateway = eventually(Duration::from_secs(20), "the outbox drained", || {
        let http = http.clone();
        async move {
            let text = scrape(&http, gateway_port).await?;
            (sample(&text, "sanyu_outbox_waiting", &[])? == 0.0).then_some(text)
        }
    })
    .await;
    let report_route = sample(
        &gateway,
        "sanyu_http_request_duration_seconds_count",
        &[
            ("route", "/v1/reports"),
            ("method", "POST"),
            ("status", "2xx"),
        ],
    );
    assert_eq!(report_route, Some(1.0), "{gateway}");
    assert!(
        sample(
            &gateway,
            "sanyu_http_request_duration_seconds_count",
            &[("route", "/v1/cases/{id}"), ("method", "GET")]
        )
        .is_some(),
        "the case read counts under its route template: {gateway}"
    );
    assert_eq!(
        sample(&gateway, "sanyu_ladders", &[("state", "running")]),
        Some(1.0),
        "{gateway}"
    );
    assert_eq!(
        sample(&gateway, "sanyu_ladders", &[("state", "late")]),
        Some(0.0)
    );
    assert_eq!(sample(&gateway, "sanyu_timers_overdue", &[]), Some(0.0));
    assert_eq!(sample(&gateway, "sanyu_dead_letters_open", &[]), Some(0.0));
    assert!(
        gateway.contains("sanyu_consumer_pending{")
            && gateway.contains("stream=\"INTAKE\",consumer=\"rules\""),
        "consumer lag per stream: {gateway}"
    );
    let rules = scrape(&http, rules_port)
        .await
        .expect("rules engine /metrics");
    assert!(rules.contains("sanyu_up 1"), "{rules}");

    for text in [&gateway, &notifier, &rules] {
        for secret in [
            case_id.as_str(),
            reference.as_str(),
            "S1",
            "Student One",
            "METRICS-CANARY",
            "SCH1",
        ] {
            assert!(!text.contains(secret), "/metrics carries {secret}");
        }
    }

    // The alert rules and the dashboard name only what the services export.
    let exported: BTreeSet<String> = [&gateway, &notifier, &rules]
        .iter()
        .flat_map(|t| sanyu_names(t))
        .collect();
    let root = workspace_root();
    let alerts = std::fs::read_to_string(root.join("deploy/prometheus/sanyu-alerts.yml"))
        .expect("deploy/prometheus/sanyu-alerts.yml");
    let dashboard = std::fs::read_to_string(root.join("deploy/grafana/sanyu-dashboard.json"))
        .expect("deploy/grafana/sanyu-dashboard.json");
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard is JSON");
    assert!(parsed["panels"].as_array().is_some_and(|p| p.len() >= 8));
    for (file, text) in [("alert rules", &alerts), ("dashboard", &dashboard)] {
        let named = sanyu_names(text);
        assert!(!named.is_empty(), "{file} name no metric");
        let missing: Vec<_> = named.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "{file} name metrics nobody exports: {missing:?}"
        );
    }
    for alert in [
        "SanyuLadderLate",
        "SanyuLadderExhausted",
        "SanyuOutboxOld",
        "SanyuConsumerStalled",
        "SanyuDeadLettersUnreviewed",
        "SanyuSmsProviderFailing",
    ] {
        assert!(
            alerts.contains(&format!("alert: {alert}")),
            "{alert} missing"
        );
    }
    match Command::new("bash")
        .arg(root.join("scripts/ensure-promtool.sh"))
        .output()
    {
        Ok(out) if out.status.success() => {
            let promtool = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            let check = Command::new(&promtool)
                .args(["check", "rules"])
                .arg(root.join("deploy/prometheus/sanyu-alerts.yml"))
                .output()
                .expect("run promtool");
            let said = String::from_utf8_lossy(&check.stdout).into_owned()
                + &String::from_utf8_lossy(&check.stderr);
            assert!(check.status.success(), "promtool check rules: {said}");
            assert!(said.contains("SUCCESS: 8 rules found"), "{said}");
        }
        _ => eprintln!(
            "promtool could not be had (scripts/ensure-promtool.sh): the alert rules were checked by parsing only"
        ),
    }
}
