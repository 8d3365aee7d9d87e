//! Plaintext to another host is refused: a connection that leaves the machine
//! carries student-related data (events, case rows, alert emails) and
//! credentials, so the database, NATS and SMTP must be encrypted *and* the
//! server's certificate verified whenever their host is not a loopback
//! address. `security.allow_plaintext = true` lifts this (a private network
//! the operator vouches for); the refusal names the setting to change.

use std::net::IpAddr;

/// Whether `host` is this machine (a loopback name or address, or a Unix
/// socket directory).
pub fn is_local(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.starts_with('/') || host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The database URL: PostgreSQL to another host needs `sslmode=verify-full`
/// (or `verify-ca`); SQLite is a local file.
pub fn check_database(url: &str) -> Result<(), String> {
    let Ok(parsed) = url::Url::parse(url) else {
        return Ok(()); // the store reports an unreadable URL itself
    };
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Ok(());
    }
    let socket = parsed
        .query_pairs()
        .any(|(k, v)| k == "host" && v.starts_with('/'));
    let host = parsed.host_str().unwrap_or("");
    if socket || is_local(host) {
        return Ok(());
    }
    let mode = parsed
        .query_pairs()
        .find(|(k, _)| k == "sslmode")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    if matches!(mode.as_str(), "verify-full" | "verify-ca") {
        return Ok(());
    }
    Err(format!(
        "database.url: PostgreSQL on {host} without a verified TLS connection \
         (sslmode={}): add `sslmode=verify-full&sslrootcert=<CA file>` to the URL, \
         or set security.allow_plaintext = true for a network you trust",
        if mode.is_empty() {
            "prefer"
        } else {
            mode.as_str()
        }
    ))
}

/// NATS URLs (a comma-separated list): to another host, `tls://` or a CA file
/// (`nats.tls_ca_file`, which makes the client require TLS).
pub fn check_nats(urls: &str, tls_ca_file: &str) -> Result<(), String> {
    for raw in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        let with_scheme = if raw.contains("://") {
            raw.to_owned()
        } else {
            format!("nats://{raw}")
        };
        let Ok(parsed) = url::Url::parse(&with_scheme) else {
            continue; // the client reports an unreadable URL itself
        };
        let host = parsed.host_str().unwrap_or("");
        if is_local(host) || parsed.scheme() == "tls" || !tls_ca_file.is_empty() {
            continue;
        }
        return Err(format!(
            "nats.url: {host} without TLS: use tls://{host}:… and set nats.tls_ca_file to the \
             CA of the cluster's certificates, or set security.allow_plaintext = true for a \
             network you trust"
        ));
    }
    Ok(())
}

/// The SMTP URL: to another host, STARTTLS required (`?tls=required`) or
/// implicit TLS (`smtps://`); both verify the server's certificate.
pub fn check_smtp(url: &str) -> Result<(), String> {
    if url.is_empty() {
        return Ok(()); // mail goes to files (development)
    }
    let Ok(parsed) = url::Url::parse(url) else {
        return Ok(()); // the notifier reports an unreadable URL itself
    };
    let host = parsed.host_str().unwrap_or("");
    if is_local(host) || parsed.scheme() == "smtps" {
        return Ok(());
    }
    let required = parsed
        .query_pairs()
        .any(|(k, v)| k == "tls" && v == "required");
    if required {
        return Ok(());
    }
    Err(format!(
        "smtp.url: {host} without required TLS: use smtps://{host} (port 465) or \
         smtp://{host}?tls=required (STARTTLS, port 587), or set security.allow_plaintext = true \
         for a relay you trust"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_sockets_are_local() {
        for host in [
            "localhost",
            "127.0.0.1",
            "127.3.2.1",
            "[::1]",
            "::1",
            "",
            "/run/postgresql",
        ] {
            assert!(is_local(host), "{host}");
        }
        for host in ["db", "10.0.0.5", "db.school.edu.cn", "[fe80::1]"] {
            assert!(!is_local(host), "{host}");
        }
    }

    #[test]
    fn postgres_to_another_host_needs_verified_tls() {
        assert!(check_database("postgres://sanyu@127.0.0.1/sanyu").is_ok());
        assert!(check_database("postgres://sanyu@localhost/sanyu?sslmode=disable").is_ok());
        assert!(check_database("postgres://sanyu@/sanyu?host=/run/postgresql").is_ok());
        assert!(check_database("sqlite://.sanyu/sanyu.db?mode=rwc").is_ok());
        assert!(check_database("postgres://sanyu@db/sanyu?sslmode=verify-full").is_ok());
        assert!(check_database("postgres://sanyu@db/sanyu?sslmode=verify-ca").is_ok());
        for bad in [
            "postgres://sanyu@db/sanyu",
            "postgres://sanyu@db/sanyu?sslmode=require",
            "postgresql://sanyu@10.0.0.5:5432/sanyu?sslmode=prefer",
        ] {
            let e = check_database(bad).expect_err(bad);
            assert!(e.contains("sslmode=verify-full"), "{e}");
        }
    }

    #[test]
    fn nats_to_another_host_needs_tls() {
        assert!(check_nats("nats://127.0.0.1:4222,nats://localhost:4223", "").is_ok());
        assert!(check_nats("tls://nats-1:4222,tls://nats-2:4222", "").is_ok());
        assert!(check_nats("nats://nats-1:4222", "/etc/sanyu/nats-ca.pem").is_ok());
        let e = check_nats("nats://127.0.0.1:4222,nats://nats-2:4222", "").expect_err("plain");
        assert!(e.contains("nats-2"), "{e}");
        assert!(check_nats("nats-3:4222", "").is_err());
    }

    #[test]
    fn smtp_to_another_host_needs_required_tls() {
        assert!(check_smtp("").is_ok());
        assert!(check_smtp("smtp://127.0.0.1:2525").is_ok());
        assert!(check_smtp("smtps://mail.school.edu.cn").is_ok());
        assert!(check_smtp("smtp://mail.school.edu.cn?tls=required").is_ok());
        assert!(check_smtp("smtp://mail.school.edu.cn").is_err());
        assert!(check_smtp("smtp://mail.school.edu.cn?tls=opportunistic").is_err());
    }
}
