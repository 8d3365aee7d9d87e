//! The Tencent Cloud stand-in: `SendSms` of API 3.0, its TC3 signature recomputed and checked.

use super::*;
use crate::tencent;

fn tencent_error(code: &str, message: &str) -> Response {
    Json(json!({"Response": {
        "Error": {"Code": code, "Message": message},
        "RequestId": uuid::Uuid::new_v4().to_string(),
    }}))
    .into_response()
}

struct Authorization {
    secret_id: String,
    date: String,
    service: String,
    signed_headers: Vec<String>,
    signature: String,
}

fn parse_authorization(value: &str) -> Option<Authorization> {
    let rest = value.strip_prefix(tencent::ALGORITHM)?.trim_start();
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (key, val) = part.trim().split_once('=')?;
        match key {
            "Credential" => credential = Some(val),
            "SignedHeaders" => signed_headers = Some(val),
            "Signature" => signature = Some(val),
            _ => return None,
        }
    }
    let mut scope = credential?.split('/');
    let (secret_id, date, service, terminator) =
        (scope.next()?, scope.next()?, scope.next()?, scope.next()?);
    if terminator != "tc3_request" || scope.next().is_some() {
        return None;
    }
    Some(Authorization {
        secret_id: secret_id.to_owned(),
        date: date.to_owned(),
        service: service.to_owned(),
        signed_headers: signed_headers?.split(';').map(str::to_owned).collect(),
        signature: signature?.to_owned(),
    })
}

pub(super) async fn handle_tencent(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let Some(auth) = header(headers, "authorization").and_then(parse_authorization) else {
        shared.reject("AuthFailure.InvalidAuthorization");
        return tencent_error(
            "AuthFailure.InvalidAuthorization",
            "Authorization in the request header is invalid.",
        );
    };
    if auth.secret_id != shared.key_id {
        shared.reject("AuthFailure.SecretIdNotFound");
        return tencent_error(
            "AuthFailure.SecretIdNotFound",
            "The SecretId is not found, please ensure that your SecretId is correct.",
        );
    }
    let timestamp = header(headers, "x-tc-timestamp").and_then(|t| t.parse::<i64>().ok());
    let Some(timestamp) = timestamp.filter(|t| (Utc::now().timestamp() - t).abs() <= 300) else {
        shared.reject("AuthFailure.SignatureExpire");
        return tencent_error("AuthFailure.SignatureExpire", "Signature expired.");
    };
    // The signed headers must include content-type and host, and be present.
    let mut signed: Vec<(&str, &str)> = Vec::new();
    for name in &auth.signed_headers {
        match header(headers, name) {
            Some(value) => signed.push((name.as_str(), value)),
            None => {
                shared.reject("AuthFailure.InvalidAuthorization");
                return tencent_error(
                    "AuthFailure.InvalidAuthorization",
                    "A signed header is missing from the request.",
                );
            }
        }
    }
    let has = |n: &str| auth.signed_headers.iter().any(|h| h == n);
    if !has("content-type") || !has("host") {
        shared.reject("AuthFailure.InvalidAuthorization");
        return tencent_error(
            "AuthFailure.InvalidAuthorization",
            "SignedHeaders must include content-type and host.",
        );
    }
    let query = if method == Method::GET {
        uri.query().unwrap_or_default()
    } else {
        ""
    };
    let (canonical, signed_headers) =
        tencent::canonical_request(method.as_str(), query, &signed, body);
    let expected = tencent::signature(
        &shared.secret,
        &auth.date,
        &auth.service,
        &tencent::string_to_sign(timestamp, &auth.date, &auth.service, &canonical),
    );
    let scope_ok = tencent::utc_date(timestamp).as_deref() == Some(auth.date.as_str())
        && matches!(
            auth.service.as_str(),
            tencent::SERVICE | crate::voice::TENCENT_SERVICE
        )
        && signed_headers == auth.signed_headers.join(";");
    if !scope_ok || expected != auth.signature {
        shared.reject("AuthFailure.SignatureFailure");
        return tencent_error(
            "AuthFailure.SignatureFailure",
            "The provided credentials could not be validated. Please check your signature is correct.",
        );
    }
    if auth.service == crate::voice::TENCENT_SERVICE {
        return tts_voice(shared, headers, body).await;
    }
    if header(headers, "x-tc-action") != Some(tencent::ACTION) {
        return tencent_error("InvalidAction", "The requested action does not exist.");
    }
    if header(headers, "x-tc-version") != Some(tencent::API_VERSION) {
        return tencent_error("NoSuchVersion", "The requested version does not exist.");
    }
    let Ok(request) = serde_json::from_slice::<tencent::SendSmsRequest>(body) else {
        return tencent_error(
            "FailedOperation.FailResolvePacket",
            "Failed to parse the request packet.",
        );
    };
    let phone = request
        .phone_number_set
        .first()
        .cloned()
        .unwrap_or_default();
    let (reply, id) = shared.record(Received {
        channel: "sms",
        phone: phone.clone(),
        template: request.template_id.clone(),
        params: numbered(&request.template_param_set),
        text: None,
        sign_name: Some(request.sign_name.clone()),
        idempotency_key: request.session_context.clone(),
    });
    let status = |code: &str, message: &str, serial: &str| {
        Json(json!({"Response": {
            "SendStatusSet": [{
                "SerialNo": serial,
                "PhoneNumber": phone,
                "Fee": if code == "Ok" { 1 } else { 0 },
                "SessionContext": request.session_context.clone().unwrap_or_default(),
                "Code": code,
                "Message": message,
                "IsoCode": "CN",
            }],
            "RequestId": uuid::Uuid::new_v4().to_string(),
        }}))
        .into_response()
    };
    match settle(reply).await {
        Reply::Accept | Reply::Delay(_) => status(
            "Ok",
            "send success",
            &format!("5000:10457106691570536578494961{id:04}"),
        ),
        Reply::ServerError => tencent_error("InternalError.Timeout", "request timed out"),
        Reply::HttpStatus(code) => plain_status(code),
        Reply::Throttled => status(
            "LimitExceeded.PhoneNumberDailyLimit",
            "the number of sms messages sent from a single mobile number every day exceeds the upper limit",
            "",
        ),
        Reply::InvalidNumber => status(
            "InvalidParameterValue.IncorrectPhoneNumber",
            "incorrect phone number",
            "",
        ),
        Reply::TemplateRejected => tencent_error(
            "FailedOperation.TemplateIncorrectOrUnapproved",
            "template is not approved or request content does not match the approved template content",
        ),
    }
}

/// `SendTtsVoice` of the voice message product (`vms`), already authenticated.
async fn tts_voice(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Response {
    if header(headers, "x-tc-action") != Some(crate::voice::TENCENT_ACTION) {
        return tencent_error("InvalidAction", "The requested action does not exist.");
    }
    if header(headers, "x-tc-version") != Some(crate::voice::TENCENT_API_VERSION) {
        return tencent_error("NoSuchVersion", "The requested version does not exist.");
    }
    let Ok(request) = serde_json::from_slice::<crate::voice::SendTtsVoiceRequest>(body) else {
        return tencent_error(
            "FailedOperation.FailResolvePacket",
            "Failed to parse the request packet.",
        );
    };
    let (reply, id) = shared.record(Received {
        channel: "voice",
        phone: request.called_number.clone(),
        template: request.template_id.clone(),
        params: numbered(&request.template_param_set),
        text: None,
        sign_name: None,
        idempotency_key: request.session_context.clone(),
    });
    match settle(reply).await {
        Reply::Accept | Reply::Delay(_) => Json(json!({"Response": {
            "SendStatus": {
                "CallId": format!("8bd3e4a0-{id:04}-4c5b-9d7e-1f2a3b4c5d6e"),
                "SessionContext": request.session_context.clone().unwrap_or_default(),
            },
            "RequestId": uuid::Uuid::new_v4().to_string(),
        }}))
        .into_response(),
        Reply::ServerError => tencent_error("InternalError.Timeout", "request timed out"),
        Reply::HttpStatus(code) => plain_status(code),
        Reply::Throttled => tencent_error(
            "LimitExceeded.DailyLimit",
            "the number of calls to this number today exceeds the limit",
        ),
        Reply::InvalidNumber => tencent_error(
            "InvalidParameterValue.IncorrectPhoneNumber",
            "incorrect phone number",
        ),
        Reply::TemplateRejected => tencent_error(
            "FailedOperation.TemplateIncorrectOrUnapproved",
            "template is not approved",
        ),
    }
}

/// Tencent's positional template parameters, named `1`, `2`, …
fn numbered(values: &[String]) -> Vec<(String, String)> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| ((i + 1).to_string(), v.clone()))
        .collect()
}
