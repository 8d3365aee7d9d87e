//! The Alibaba Cloud stand-in: `SendSms` as an RPC call, its signature recomputed and checked.

use super::*;
use crate::aliyun;

fn aliyun_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({
            "RequestId": uuid::Uuid::new_v4().to_string().to_uppercase(),
            "HostId": "dysmsapi.aliyuncs.com",
            "Code": code,
            "Message": message,
        })),
    )
        .into_response()
}

pub(super) async fn handle_aliyun(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    // RPC parameters may come in the query string and/or a form body; the
    // signature covers all of them.
    let mut params: BTreeMap<String, String> = BTreeMap::new();
    if let Some(query) = uri.query() {
        params.extend(url::form_urlencoded::parse(query.as_bytes()).into_owned());
    }
    let is_form = header(headers, "content-type")
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if is_form {
        params.extend(url::form_urlencoded::parse(body).into_owned());
    }
    let get = |name: &str| params.get(name).cloned().unwrap_or_default();

    let complete = ["AccessKeyId", "Signature", "SignatureNonce", "Timestamp"]
        .iter()
        .all(|p| params.contains_key(*p))
        && get("SignatureMethod") == aliyun::SIGNATURE_METHOD
        && get("SignatureVersion") == aliyun::SIGNATURE_VERSION;
    if !complete {
        shared.reject("IncompleteSignature");
        return aliyun_error(
            StatusCode::BAD_REQUEST,
            "IncompleteSignature",
            "The request signature does not conform to Aliyun standards.",
        );
    }
    if get("AccessKeyId") != shared.key_id {
        shared.reject("InvalidAccessKeyId.NotFound");
        return aliyun_error(
            StatusCode::NOT_FOUND,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.",
        );
    }
    let expected = aliyun::sign(method.as_str(), &params, &shared.secret);
    if expected != get("Signature") {
        shared.reject("SignatureDoesNotMatch");
        return aliyun_error(
            StatusCode::BAD_REQUEST,
            "SignatureDoesNotMatch",
            "Specified signature is not matched with our calculation.",
        );
    }
    let fresh = NaiveDateTime::parse_from_str(&get("Timestamp"), "%Y-%m-%dT%H:%M:%SZ")
        .map(|t| (Utc::now().naive_utc() - t).num_minutes().abs() <= 15)
        .unwrap_or(false);
    if !fresh {
        shared.reject("InvalidTimeStamp.Expired");
        return aliyun_error(
            StatusCode::BAD_REQUEST,
            "InvalidTimeStamp.Expired",
            "Specified time stamp or date value is expired.",
        );
    }
    if !shared.lock().nonces.insert(get("SignatureNonce")) {
        shared.reject("SignatureNonceUsed");
        return aliyun_error(
            StatusCode::BAD_REQUEST,
            "SignatureNonceUsed",
            "Specified signature nonce was used already.",
        );
    }
    let voice = get("Action") == crate::voice::ALIYUN_ACTION;
    if !(get("Action") == "SendSms" || voice) || get("Version") != aliyun::API_VERSION {
        return aliyun_error(
            StatusCode::NOT_FOUND,
            "InvalidAction.NotFound",
            "Specified api is not found, please check your url and method.",
        );
    }
    let param_field = if voice { "TtsParam" } else { "TemplateParam" };
    let template_params = match serde_json::from_str::<serde_json::Value>(&get(param_field)) {
        Ok(serde_json::Value::Object(map)) => map
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string()),
                )
            })
            .collect(),
        _ => {
            return aliyun_error(
                StatusCode::OK,
                "isv.INVALID_JSON_PARAM",
                "JSON参数不合法，只接受字符串值",
            );
        }
    };
    let received = if voice {
        Received {
            channel: "voice",
            phone: get("CalledNumber"),
            template: get("TtsCode"),
            params: template_params,
            text: None,
            sign_name: None,
            idempotency_key: params.get("OutId").cloned(),
        }
    } else {
        Received {
            channel: "sms",
            phone: get("PhoneNumbers"),
            template: get("TemplateCode"),
            params: template_params,
            text: None,
            sign_name: Some(get("SignName")),
            idempotency_key: params.get("OutId").cloned(),
        }
    };
    let (reply, id) = shared.record(received);
    let answer = |code: &str, message: &str| aliyun_error(StatusCode::OK, code, message);
    match settle(reply).await {
        Reply::Accept | Reply::Delay(_) if voice => Json(json!({
            "Code": "OK",
            "Message": "OK",
            "CallId": format!("{:012}^{}", 116_012_354_148_u64 + id, id),
            "RequestId": uuid::Uuid::new_v4().to_string().to_uppercase(),
        }))
        .into_response(),
        Reply::Accept | Reply::Delay(_) => Json(json!({
            "Code": "OK",
            "Message": "OK",
            "BizId": format!("{:06}^{}", 900_619 + id, id),
            "RequestId": uuid::Uuid::new_v4().to_string().to_uppercase(),
        }))
        .into_response(),
        Reply::ServerError => aliyun_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "isp.SYSTEM_ERROR",
            "isp.SYSTEM_ERROR",
        ),
        Reply::HttpStatus(status) => plain_status(status),
        Reply::Throttled => answer("isv.BUSINESS_LIMIT_CONTROL", "触发分钟级流控Permits:1"),
        Reply::InvalidNumber => answer("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号"),
        Reply::TemplateRejected => answer("isv.SMS_TEMPLATE_ILLEGAL", "模板不合法(不存在或被拉黑)"),
    }
}
