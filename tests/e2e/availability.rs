//! Availability across the real binaries (issue #13, items 8, 11, 12):
//! slow clients are dropped and the connection limit holds; a database
//! outage answers 503 with `Retry-After`, never 500; every service starts
//! without its database or NATS, is alive but not ready, and becomes ready
//! and works without a restart once they are back.

use std::time::{Duration, Instant};

use sanyu_e2e::Stack;
use sanyu_e2e::support::{NatsServer, PgCluster, ServiceProcess, TestDb, eventually, free_port};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Read until the server closes the connection; what it sent, or `None`
/// when it is still open after `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&seen).into_owned()),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

async fn connect(stack: &Stack) -> TcpStream {
    TcpStream::connect(("127.0.0.1", stack.http_port))
        .await
        .expect("connect to the gateway")
}

fn slow_limits() -> Vec<(&'static str, String)> {
    vec![
        ("SANYU_HTTP__HEADER_READ_TIMEOUT_MS", "1000".into()),
        ("SANYU_HTTP__BODY_READ_TIMEOUT_MS", "1000".into()),
        ("SANYU_HTTP__IDLE_TIMEOUT_MS", "1500".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_headers_slow_bodies_and_idle_connections_are_closed_while_others_are_served() {
    let mut stack = Stack::new(TestDb::sqlite()).await;
    // The well-behaved client opens a connection per request: a pooled one
    // left idle for the gateway's 1 s idle timeout here could be closed by
    // the gateway just as the client reuses it (hyper's IncompleteMessage).
    stack.http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    stack.start_gateway_with(&slow_limits()).await;

    // Half a header block.
    let mut half_header = connect(&stack).await;
    half_header
        .write_all(b"POST /v1/reports HTTP/1.1\r\nHost: sanyu.test\r\nContent-Ty")
        .await
        .expect("write half a header block");
    // A POST that stops after 13 of 1,000 bytes.
    let mut half_body = connect(&stack).await;
    let head = format!(
        "POST /v1/reports HTTP/1.1\r\nHost: sanyu.test\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"student_no\"",
        stack.school.teacher_c1
    );
    half_body
        .write_all(head.as_bytes())
        .await
        .expect("write 13 bytes of the body");
    // A kept-alive connection that asks once and then says nothing.
    let mut idle = connect(&stack).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: sanyu.test\r\n\r\n")
        .await
        .expect("write a request");

    // Meanwhile the gateway serves everyone else.
    let started = Instant::now();
    let served = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body("S1", "elevated", "served while others stall"),
        )
        .await;
    assert_eq!(served.status(), 202);
    let ready = stack
        .http
        .get(format!("{}/readyz", stack.base_url()))
        .send()
        .await
        .expect("GET /readyz");
    assert_eq!(ready.status(), 200);

    // Each slow shape is closed within its (1 s) timeout, with slack for a
    // loaded machine; before the fix all three stayed open past 65 s.
    let bound = Duration::from_secs(6);
    let (a, b, c) = tokio::join!(
        closed_within(&mut half_header, bound),
        closed_within(&mut half_body, bound),
        closed_within(&mut idle, bound),
    );
    assert!(a.is_some(), "half a header block was not closed");
    let b = b.expect("a body stopped after 13 bytes was not closed");
    assert!(
        b.starts_with("HTTP/1.1 408"),
        "answer to a stalled body: {b}"
    );
    assert!(b.contains("\"request_timeout\""), "the error body: {b}");
    let c = c.expect("an idle kept-alive connection was not closed");
    assert!(c.starts_with("HTTP/1.1 200"), "answer before idling: {c}");
    eprintln!(
        "slow clients closed {:?} after they started",
        started.elapsed()
    );

    // And the gateway still serves.
    let again = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body("S2", "elevated", "served after"),
        )
        .await;
    assert_eq!(again.status(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_past_the_limit_wait_until_one_closes() {
    let mut stack = Stack::new(TestDb::sqlite()).await;
    stack.gateway = Some(ServiceProcess::spawn(
        "sanyu-gateway",
        &stack.env_with(&[("SANYU_HTTP__MAX_CONNECTIONS", "4".into())]),
    ));
    // Wait for readiness on connections that are not kept (the harness's
    // pooled client would hold one of the four).
    let once = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let url = format!("{}/readyz", stack.base_url());
    eventually(Duration::from_secs(20), "gateway ready", || {
        let (once, url) = (once.clone(), url.clone());
        async move {
            once.get(&url)
                .send()
                .await
                .ok()?
                .status()
                .is_success()
                .then_some(())
        }
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut c = connect(&stack).await;
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: sanyu.test\r\n\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut buf))
            .await
            .expect("an answer within the limit")
            .expect("read");
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(c);
    }
    // The fifth connection is not served while four are open…
    let mut fifth = connect(&stack).await;
    fifth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: sanyu.test\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 512];
    let early = tokio::time::timeout(Duration::from_millis(800), fifth.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "a fifth connection was served past the limit of 4"
    );
    // …and is, once one of them closes.
    drop(held.pop());
    let answer = closed_within(&mut fifth, Duration::from_secs(10))
        .await
        .expect("the fifth connection answered and closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// A database on a private PostgreSQL server the test can stop.
async fn stack_on_private_postgres() -> Option<(PgCluster, Stack)> {
    let cluster = PgCluster::start().await?;
    let db = TestDb::postgres_at(&cluster.admin_url()).await;
    let stack = Stack::new(db).await;
    Some((cluster, stack))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_outage_answers_503_with_retry_after_and_never_500() {
    let Some((mut cluster, mut stack)) = stack_on_private_postgres().await else {
        return;
    };
    stack.start_gateway().await;
    let base = stack.base_url();
    let teacher = stack.school.teacher_c1.clone();
    let counsellor = stack.school.counsellor.clone();
    let http = stack.http.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Four clients: two report, two read cases, without pause.
    let mut clients = Vec::new();
    for i in 0..4 {
        let (http, base, teacher, counsellor, stop) = (
            http.clone(),
            base.clone(),
            teacher.clone(),
            counsellor.clone(),
            stop.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut seen: Vec<(u16, bool, Duration, String)> = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let started = Instant::now();
                let request = if i % 2 == 0 {
                    http.post(format!("{base}/v1/reports"))
                        .bearer_auth(&teacher)
                        .json(&Stack::report_body("S1", "elevated", "during an outage"))
                } else {
                    http.get(format!("{base}/v1/cases"))
                        .bearer_auth(&counsellor)
                };
                let Ok(r) = request.timeout(Duration::from_secs(30)).send().await else {
                    continue;
                };
                let status = r.status().as_u16();
                let retry_after = r.headers().contains_key("retry-after");
                let body = r.text().await.unwrap_or_default();
                seen.push((status, retry_after, started.elapsed(), body));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.stop().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    cluster.restart().await;
    // Served again without a restart of the gateway.
    eventually(Duration::from_secs(30), "reports accepted again", || {
        let (http, base, teacher) = (http.clone(), base.clone(), teacher.clone());
        async move {
            let r = http
                .post(format!("{base}/v1/reports"))
                .bearer_auth(&teacher)
                .json(&Stack::report_body("S2", "elevated", "after the outage"))
                .send()
                .await
                .ok()?;
            (r.status() == 202).then_some(())
        }
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.await.expect("client"));
    }
    let unavailable: Vec<_> = all.iter().filter(|s| s.0 == 503).collect();
    let slowest = unavailable.iter().map(|s| s.2).max().unwrap_or_default();
    let slowest_answer = all.iter().map(|s| s.2).max().unwrap_or_default();
    eprintln!(
        "outage: {} answers, {} × 503, slowest 503 after {slowest:?}, slowest answer {slowest_answer:?}",
        all.len(),
        unavailable.len()
    );
    let bad: Vec<_> = all
        .iter()
        .filter(|(status, retry_after, _, _)| {
            !((200..300).contains(status) || (*status == 503 && *retry_after))
        })
        .collect();
    assert!(
        bad.is_empty(),
        "answers other than 2xx or 503 with Retry-After: {bad:?}"
    );
    assert!(!unavailable.is_empty(), "the outage was never seen");
    for (_, _, _, body) in &unavailable {
        let v: Value = serde_json::from_str(body).expect("the error body is JSON");
        assert_eq!(v["error"]["code"], "unavailable", "{body}");
    }
}

fn health_env(port: u16) -> (&'static str, String) {
    ("SANYU_HEALTH__LISTEN", format!("127.0.0.1:{port}"))
}

async fn status_of(http: &reqwest::Client, url: &str) -> Option<u16> {
    http.get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_service_started_with_its_database_down_becomes_ready_when_it_returns() {
    let Some((mut cluster, mut stack)) = stack_on_private_postgres().await else {
        return;
    };
    cluster.stop().await;
    let stopped_at = Instant::now();

    let ports = [free_port(), free_port(), free_port()];
    let gateway = ServiceProcess::spawn("sanyu-gateway", &stack.env());
    let services = [
        ("sanyu-rules", ports[0]),
        ("sanyu-notifier", ports[1]),
        ("sanyu-scheduler", ports[2]),
    ]
    .map(|(name, port)| {
        (
            ServiceProcess::spawn(name, &stack.env_with(&[health_env(port)])),
            port,
        )
    });
    let mut urls = vec![stack.base_url()];
    urls.extend(ports.iter().map(|p| format!("http://127.0.0.1:{p}")));
    let http = stack.http.clone();

    // Alive and not ready, every one of them.
    for url in &urls {
        eventually(Duration::from_secs(20), &format!("{url}/healthz"), || {
            let (http, url) = (http.clone(), url.clone());
            async move { (status_of(&http, &format!("{url}/healthz")).await? == 200).then_some(()) }
        })
        .await;
        assert_eq!(status_of(&http, &format!("{url}/readyz")).await, Some(503));
    }
    // A request meanwhile: 503 with Retry-After, not 500.
    let early = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body("S1", "high", "while the database is down"),
        )
        .await;
    assert_eq!(early.status(), 503);
    assert!(early.headers().contains_key("retry-after"));
    // Past the 10 s after which a service used to give up.
    let down_for = Duration::from_secs(12);
    tokio::time::sleep(down_for.saturating_sub(stopped_at.elapsed())).await;
    let mut gateway = gateway;
    assert!(
        gateway.is_running(),
        "the gateway exited: {}",
        gateway.logs()
    );
    let mut services = services;
    for (service, _) in &mut services {
        assert!(
            service.is_running(),
            "{} exited: {}",
            service.name(),
            service.logs()
        );
    }

    cluster.restart().await;
    let back = Instant::now();
    for url in &urls {
        eventually(Duration::from_secs(30), &format!("{url}/readyz"), || {
            let (http, url) = (http.clone(), url.clone());
            async move { (status_of(&http, &format!("{url}/readyz")).await? == 200).then_some(()) }
        })
        .await;
    }
    eprintln!(
        "PostgreSQL down {:?}; every service ready {:?} after it returned",
        down_for,
        back.elapsed()
    );
    // And the chain works without a restart: report → case → email.
    let r = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body("S1", "high", "after the database returned"),
        )
        .await;
    assert_eq!(r.status(), 202);
    stack.wait_for_cases(1).await;
    stack.smtp.wait_for(1, Duration::from_secs(30)).await;
    stack.gateway = Some(gateway);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_service_started_before_its_nats_server_becomes_ready_when_nats_comes_up() {
    let mut stack = Stack::new(TestDb::sqlite()).await;
    let nats_port = free_port();
    let nats_url = format!("nats://127.0.0.1:{nats_port}");
    let health_port = free_port();
    let gateway = ServiceProcess::spawn(
        "sanyu-gateway",
        &stack.env_with(&[("SANYU_NATS__URL", nats_url.clone())]),
    );
    let rules = ServiceProcess::spawn(
        "sanyu-rules",
        &stack.env_with(&[
            ("SANYU_NATS__URL", nats_url.clone()),
            health_env(health_port),
        ]),
    );
    let http = stack.http.clone();
    let urls = [stack.base_url(), format!("http://127.0.0.1:{health_port}")];
    for url in &urls {
        eventually(Duration::from_secs(20), &format!("{url}/healthz"), || {
            let (http, url) = (http.clone(), url.clone());
            async move { (status_of(&http, &format!("{url}/healthz")).await? == 200).then_some(()) }
        })
        .await;
        let r = http
            .get(format!("{url}/readyz"))
            .send()
            .await
            .expect("GET /readyz");
        assert_eq!(r.status(), 503);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _nats = NatsServer::start_on(nats_port).await;
    for url in &urls {
        eventually(Duration::from_secs(30), &format!("{url}/readyz"), || {
            let (http, url) = (http.clone(), url.clone());
            async move { (status_of(&http, &format!("{url}/readyz")).await? == 200).then_some(()) }
        })
        .await;
    }
    stack.gateway = Some(gateway);
    stack.rules = Some(rules);
    let r = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body("S1", "high", "after NATS came up"),
        )
        .await;
    assert_eq!(r.status(), 202);
    // The rules engine, on the late NATS server, opens the case.
    stack.wait_for_cases(1).await;
}
