#![allow(clippy::unwrap_used)]
use super::*;

const DOC_SECRET_KEY: &str = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE";

/// "Signature v3", GET example: CVM DescribeInstances, Limit=10&Offset=0.
#[test]
fn tc3_reproduces_the_documented_get_example() {
    let (canonical, signed) = canonical_request(
        "GET",
        "Limit=10&Offset=0",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("host", "cvm.tencentcloudapi.com"),
        ],
        b"",
    );
    assert_eq!(signed, "content-type;host");
    let date = utc_date(1_539_084_154).unwrap();
    assert_eq!(date, "2018-10-09");
    let to_sign = string_to_sign(1_539_084_154, &date, "cvm", &canonical);
    assert_eq!(
        to_sign,
        "TC3-HMAC-SHA256\n1539084154\n2018-10-09/cvm/tc3_request\n\
         91c9c192c14460df6c1ffc69e34e6c5e90708de2a6d282cccf957dbf1aa7f3a7"
    );
    let sig = signature(DOC_SECRET_KEY, &date, "cvm", &to_sign);
    assert_eq!(
        authorization(
            "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE",
            &date,
            "cvm",
            &signed,
            &sig
        ),
        "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2018-10-09/cvm/tc3_request, \
         SignedHeaders=content-type;host, \
         Signature=5da7a33f6993f0614b047e5df4582db9e9bf4672ba50567dba16c6ccf174c474"
    );
}

/// "Signature v3", POST JSON example (the one with `\u672a\u547d\u540d`).
#[test]
fn tc3_reproduces_the_documented_post_json_example() {
    let payload = br#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#;
    assert_eq!(
        sha256_hex(payload),
        "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
    );
    let (canonical, signed) = canonical_request(
        "POST",
        "",
        &[
            ("Host", "cvm.tencentcloudapi.com"),
            ("Content-Type", "application/json; charset=utf-8"),
        ],
        payload,
    );
    assert_eq!(
        canonical,
        "POST\n/\n\ncontent-type:application/json; charset=utf-8\nhost:cvm.tencentcloudapi.com\n\n\
         content-type;host\n35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
    );
    let date = utc_date(1_551_113_065).unwrap();
    assert_eq!(date, "2019-02-25", "UTC date, not UTC+8");
    let to_sign = string_to_sign(1_551_113_065, &date, "cvm", &canonical);
    assert!(to_sign.ends_with("5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"));
    assert_eq!(
        signature(DOC_SECRET_KEY, &date, "cvm", &to_sign),
        "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
    );
    assert_eq!(signed, "content-type;host");
}

#[test]
fn error_codes_are_classified() {
    let c = |code: &str| classify(code, String::new());
    assert_eq!(
        c("AuthFailure.SignatureFailure").permanent_kind(),
        Some(PermanentKind::AuthFailure)
    );
    assert_eq!(
        c("InternalError.Timeout").transient_kind(),
        Some(TransientKind::ServerError)
    );
    assert_eq!(
        c("LimitExceeded.PhoneNumberDailyLimit").transient_kind(),
        Some(TransientKind::Throttled)
    );
    assert_eq!(
        c("RequestLimitExceeded").transient_kind(),
        Some(TransientKind::Throttled)
    );
    assert_eq!(
        c("InvalidParameterValue.IncorrectPhoneNumber").permanent_kind(),
        Some(PermanentKind::InvalidNumber)
    );
    assert_eq!(
        c("FailedOperation.PhoneNumberInBlacklist").permanent_kind(),
        Some(PermanentKind::RecipientBlocked)
    );
    assert_eq!(
        c("FailedOperation.TemplateIncorrectOrUnapproved").permanent_kind(),
        Some(PermanentKind::TemplateRejected)
    );
    assert_eq!(
        c("FailedOperation.InsufficientBalanceInSmsPackage").permanent_kind(),
        Some(PermanentKind::AccountUnavailable)
    );
    assert_eq!(
        c("LimitExceeded.PhoneNumberCountLimit").permanent_kind(),
        Some(PermanentKind::BadRequest)
    );
    assert!(c("SomethingNew").is_transient());
}

#[test]
fn a_per_number_failure_in_a_200_response_is_an_error() {
    let body = br#"{"Response":{"SendStatusSet":[{"SerialNo":"","PhoneNumber":"+8613800138000",
        "Fee":0,"SessionContext":"k","Code":"InvalidParameterValue.IncorrectPhoneNumber",
        "Message":"incorrect phone number","IsoCode":"CN"}],"RequestId":"r"}}"#;
    let err = interpret_response(200, body).unwrap_err();
    assert_eq!(err.permanent_kind(), Some(PermanentKind::InvalidNumber));
    assert_eq!(err.code(), "InvalidParameterValue.IncorrectPhoneNumber");
}

#[test]
fn the_documented_status_callback_is_parsed_into_receipts() {
    // Example body from "SMS Sending Status Notification", plus a failure.
    let body = r#"[
      {"user_receive_time":"2015-10-17 08:03:04","nationcode":"86","mobile":"13xxxxxxxxx",
       "report_status":"SUCCESS","errmsg":"DELIVRD",
       "description":"The SMS message is successfully delivered","sid":"xxxxxxx"},
      {"user_receive_time":"2015-10-17 08:03:09","nationcode":"86","mobile":"13xxxxxxxxx",
       "report_status":"FAIL","errmsg":"MK:0001","description":"空号","sid":"yyyyyyy"}
    ]"#;
    let receipts = parse_status_callback(body.as_bytes()).unwrap();
    assert_eq!(receipts[0].status, DeliveryStatus::Delivered);
    assert_eq!(receipts[0].provider_message_id.as_deref(), Some("xxxxxxx"));
    assert_eq!(receipts[0].provider_code.as_deref(), Some("DELIVRD"));
    assert_eq!(
        receipts[1].status,
        DeliveryStatus::Failed {
            reason: "MK:0001: 空号".into()
        }
    );
    assert!(receipts.iter().all(|r| r.idempotency_key.is_none()));
}

#[test]
fn a_callback_with_an_unknown_status_is_refused() {
    let body = br#"[{"report_status":"MAYBE","sid":"x"}]"#;
    assert!(matches!(
        parse_status_callback(body),
        Err(ReceiptError::UnknownStatus(s)) if s == "MAYBE"
    ));
}
