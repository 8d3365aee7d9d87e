//! The screening upload the district and burst benches send.

/// The `multipart/form-data` body of a PHQ-9 upload (`0-3` coding) of
/// `file` (CSV) for `school`, and its content type.
pub fn multipart(school: &str, file: &[u8]) -> (String, Vec<u8>) {
    let boundary = "sanyu-bench-boundary-5d1e";
    let mut body = Vec::new();
    for (name, value) in [
        ("school", school),
        ("instrument", "PHQ-9"),
        ("coding", "0-3"),
        ("administered", "2026-11-20"),
    ] {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"phq9.csv\"\r\nContent-Type: text/csv\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
