//! The production shape of NATS: a three-node JetStream cluster run from
//! `deploy/nats/nats-cluster.conf` (TLS for clients and routes against a test
//! CA, password routes, the SANYU account's user), streams with three
//! replicas, the services given all three URLs. The chain keeps working
//! while the leader of the intake stream is killed (and later restarted) and
//! while the leader of the notification stream is cut off (its process frozen:
//! to its peers and clients that is a partition; thawing it heals it): no
//! report is lost, none is decided twice, every first contact is sent once,
//! and the pause each fault caused is printed.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sanyu_e2e::Stack;
use sanyu_e2e::support::{NatsCluster, TestCa, TestDb, eventually};
use sanyu_store::entities::{case, case_signal, delivery, report, student};
use sea_orm::{EntityTrait, PaginatorTrait};

/// Reports per phase: before any fault, with the intake leader dead, with the
/// notify leader partitioned.
const PER_PHASE: usize = 15;

async fn post_phase(stack: &Stack, students: &[String]) {
    for no in students {
        let body = Stack::report_body(no, "high", "cluster");
        let response = stack.post_report(&stack.school.teacher_c1, &body).await;
        assert_eq!(response.status(), 202, "report about {no} accepted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Report accepted → first contact sent, per student number, in ms.
async fn latencies(stack: &Stack) -> HashMap<String, i64> {
    let students: HashMap<_, _> = student::Entity::find()
        .all(&stack.conn)
        .await
        .expect("students")
        .into_iter()
        .map(|s| (s.id, s.student_no))
        .collect();
    let reported: HashMap<_, DateTime<Utc>> = report::Entity::find()
        .all(&stack.conn)
        .await
        .expect("reports")
        .into_iter()
        .map(|r| (r.student_id, r.created_at))
        .collect();
    let case_student: HashMap<_, _> = case::Entity::find()
        .all(&stack.conn)
        .await
        .expect("cases")
        .into_iter()
        .filter_map(|c| Some((c.id, c.student_id?)))
        .collect();
    let mut out = HashMap::new();
    for d in delivery::Entity::find()
        .all(&stack.conn)
        .await
        .expect("deliveries")
    {
        let (Some(sent), Some(student)) = (d.sent_at, case_student.get(&d.case_id)) else {
            continue;
        };
        let ms = (sent - reported[student]).num_milliseconds();
        let e = out.entry(students[student].clone()).or_insert(ms);
        *e = (*e).min(ms);
    }
    out
}

fn figures(name: &str, students: &[String], lat: &HashMap<String, i64>) -> i64 {
    let mut v: Vec<i64> = students.iter().map(|s| lat[s]).collect();
    v.sort_unstable();
    let max = *v.last().expect("a phase has reports");
    println!(
        "cluster {name}: report → first contact p50 {} ms, max {max} ms ({} reports)",
        v[v.len() / 2],
        v.len()
    );
    max
}

async fn a_three_node_cluster_survives_a_leader_crash_and_a_partition(db: TestDb) {
    // The production file, run as its header says: TLS, accounts, routes.
    let certs = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::write(certs.path());
    let conf =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats/nats-cluster.conf");
    let mut cluster = NatsCluster::start_deployed(&conf, &ca).await;
    let (user, password) = cluster.nodes[0].auth().expect("the cluster wants a user");
    let mut stack = Stack::new(db).await;
    // Every service talks to the cluster (the stack's own single server stays idle).
    stack.env_extra = vec![
        ("SANYU_NATS__URL".to_owned(), cluster.urls()),
        (
            "SANYU_NATS__TLS_CA_FILE".to_owned(),
            ca.ca().display().to_string(),
        ),
        ("SANYU_NATS__USER".to_owned(), user),
        ("SANYU_NATS__PASSWORD".to_owned(), password),
        ("SANYU_NATS__STREAM_REPLICAS".to_owned(), "3".to_owned()),
        ("SANYU_NATS__MAX_DELIVER".to_owned(), "8".to_owned()),
    ];
    sanyu_test_support::fixtures::add_students(&stack.conn, "SCH1", PER_PHASE * 3).await;
    let numbers: Vec<String> = (0..PER_PHASE * 3).map(|i| format!("B{i:05}")).collect();
    let (before, rest) = numbers.split_at(PER_PHASE);
    let (crash, partition) = rest.split_at(PER_PHASE);

    stack.start_gateway().await;
    stack.start_rules(&[]);
    stack.start_notifier();
    stack.start_scheduler(&[]);

    let all_sent = |n: usize| {
        let stack = &stack;
        async move {
            eventually(
                Duration::from_secs(120),
                "every first contact sent",
                || async {
                    let lat = latencies(stack).await;
                    (lat.len() >= n).then_some(lat)
                },
            )
            .await
        }
    };

    post_phase(&stack, before).await;
    all_sent(PER_PHASE).await;
    // The streams really are replicated three times.
    for stream in ["INTAKE", "CASE", "NOTIFY"] {
        let js = async_nats::jetstream::new(cluster.nodes[0].client().await);
        let info = js
            .get_stream(stream)
            .await
            .expect("stream")
            .info()
            .await
            .expect("info")
            .clone();
        assert_eq!(info.config.num_replicas, 3, "{stream} has three replicas");
    }

    // The intake stream's leader dies; reports keep coming; it comes back.
    let leader = cluster.stream_leader("INTAKE").await;
    cluster.node(&leader).kill();
    post_phase(&stack, crash).await;
    cluster.node(&leader).start_again().await;
    all_sent(PER_PHASE * 2).await;

    // The notification stream's leader is cut off for a while, then heals.
    let leader = cluster.stream_leader("NOTIFY").await;
    cluster.node(&leader).freeze(true);
    post_phase(&stack, partition).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    cluster.node(&leader).freeze(false);
    let lat = all_sent(PER_PHASE * 3).await;

    // Nothing lost, nothing decided twice, every first contact sent once.
    let signals = case_signal::Entity::find()
        .count(&stack.conn)
        .await
        .expect("signals");
    assert_eq!(signals, (PER_PHASE * 3) as u64, "each report decided once");
    let cases = case::Entity::find()
        .count(&stack.conn)
        .await
        .expect("cases");
    assert_eq!(cases, (PER_PHASE * 3) as u64, "one case per student");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rows = delivery::Entity::find()
        .all(&stack.conn)
        .await
        .expect("deliveries");
    assert!(
        rows.iter().all(|d| d.status == "sent"),
        "every delivery sent"
    );
    let mails = stack.smtp.received();
    assert_eq!(
        mails.len(),
        rows.len(),
        "one email per delivery, no duplicate"
    );

    let calm = figures("before any fault", before, &lat);
    let crashed = figures("intake leader killed", crash, &lat);
    let cut = figures("notify leader partitioned 5 s+", partition, &lat);
    println!(
        "cluster: pause caused by the leader crash ≈ {} ms, by the partition ≈ {} ms",
        (crashed - calm).max(0),
        (cut - calm).max(0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_three_node_cluster_survives_a_leader_crash_and_a_partition_on_postgres() {
    match TestDb::postgres().await {
        Some(db) => a_three_node_cluster_survives_a_leader_crash_and_a_partition(db).await,
        None => {
            a_three_node_cluster_survives_a_leader_crash_and_a_partition(TestDb::sqlite()).await
        }
    }
}
