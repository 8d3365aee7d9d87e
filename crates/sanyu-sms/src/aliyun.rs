//! Alibaba Cloud SMS (`dysmsapi`, API version 2017-05-25), action `SendSms`.
//!
//! # Signature
//!
//! The RPC-style signature with `SignatureMethod=HMAC-SHA1`,
//! `SignatureVersion=1.0` (Alibaba's current docs call this "request syntax
//! and signature method V2 for RPC APIs"; the V3 `ACS3-HMAC-SHA256` method is
//! not implemented here). From "Signature mechanism" / "签名机制"
//! (alibabacloud.com/help/doc-detail/127287, help.aliyun.com/document_detail/25490)
//! and the SMS-specific walkthrough (help.aliyun.com/document_detail/56189):
//!
//! 1. Take every request parameter except `Signature`, percent-encode names
//!    and values per RFC 3986 — only `A-Z a-z 0-9 - _ . ~` stay literal,
//!    space is `%20` (never `+`), `*` is `%2A`, `~` is not encoded, UTF-8
//!    bytes as `%XX` upper-case — sort by name, and join as `k=v&k=v`.
//! 2. `StringToSign = HTTPMethod + "&" + percentEncode("/") + "&" + percentEncode(canonicalized)`.
//! 3. `Signature = Base64(HMAC-SHA1(AccessKeySecret + "&", StringToSign))` —
//!    note the `&` appended to the secret.
//!
//! Both documented examples are known-answer tests below: the generic one
//! (`AccessKeySecret=testsecret`, `DescribeRegions`, signature
//! `OLeaidS1JvxuMvnyHOwuJ+uX5qY=`) and the SMS one (`testSecret`, `SendSms`,
//! `zJDF+Lrzhj/ThnlvIToysFRq6t4=`).
//!
//! # Request
//!
//! The documented examples use `GET` with everything in the query string. We
//! send `POST` with the same parameters as an `application/x-www-form-urlencoded`
//! body (which RPC APIs accept, and the method is part of the string to
//! sign): phone numbers and message parameters then never sit in a URL that
//! proxies and access logs record.
//!
//! Parameters: `Action=SendSms`, `Version=2017-05-25`, `Format=JSON`,
//! `RegionId`, `AccessKeyId`, `SignatureMethod`, `SignatureVersion`,
//! `SignatureNonce` (UUID v4), `Timestamp` (`yyyy-MM-ddTHH:mm:ssZ`, UTC),
//! `PhoneNumbers` (11 digits for mainland numbers), `SignName`,
//! `TemplateCode`, `TemplateParam` (JSON object), `OutId` (our idempotency
//! key, echoed in the delivery report).
//!
//! # Response and error classes
//!
//! Success: `{"Code":"OK","Message":"OK","BizId":"…","RequestId":"…"}`.
//! Otherwise `Code` decides ([`classify`], codes from "API错误码"
//! help.aliyun.com/document_detail/101346): number, template, signature
//! (签名), content, auth and account codes are permanent; `isv.BUSINESS_LIMIT_CONTROL`
//! (per-number rate limit), `isv.DAY_LIMIT_CONTROL`/`MONTH_LIMIT_CONTROL`
//! (quota), `Throttling*` are transient/throttled; `isp.SYSTEM_ERROR` and
//! 5xx are transient; unknown codes are transient (see [`crate::error`]).
//!
//! # Delivery reports
//!
//! [`parse_sms_report`] reads the HTTP batch push `SmsReport` body (a JSON
//! array, help.aliyun.com/document_detail/101867); answer it with
//! [`SMS_REPORT_ACK`].

use std::collections::BTreeMap;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use sha1::Sha1;

use crate::error::{ConfigError, PermanentKind, ReceiptError, SmsError, TransientKind};
use crate::message::{SmsAccepted, SmsMessage};
use crate::provider::{
    ApprovedTemplate, HttpSettings, SendFuture, SmsProvider, TemplateTable, excerpt, exchange,
    parse_endpoint,
};
use crate::receipt::{DeliveryReceipt, DeliveryStatus, non_empty, parse_provider_time};
use crate::secret::Secret;

pub const PROVIDER: &str = "aliyun";
pub const DEFAULT_ENDPOINT: &str = "https://dysmsapi.aliyuncs.com/";
pub const API_VERSION: &str = "2017-05-25";
pub const SIGNATURE_METHOD: &str = "HMAC-SHA1";
pub const SIGNATURE_VERSION: &str = "1.0";
/// The body Alibaba Cloud expects back from a `SmsReport` push (HTTP 200).
pub const SMS_REPORT_ACK: &str = r#"{"code":0,"msg":"接收成功"}"#;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliyunConfig {
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    pub access_key_id: String,
    pub access_key_secret: Secret,
    /// The approved SMS signature (签名), e.g. the school's name.
    pub sign_name: String,
    #[serde(default = "default_region")]
    pub region_id: String,
    pub templates: Vec<ApprovedTemplate>,
    #[serde(default)]
    pub http: HttpSettings,
}

fn default_endpoint() -> String {
    DEFAULT_ENDPOINT.to_owned()
}

/// The region a configuration that names none uses (voice calls too).
pub(crate) fn default_region() -> String {
    "cn-hangzhou".to_owned()
}

/// RFC 3986 unreserved characters stay; everything else is `%XX`.
const RFC3986: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Alibaba Cloud's `percentEncode`: RFC 3986, `%20` for space, `~` literal.
pub fn percent_encode(value: &str) -> String {
    utf8_percent_encode(value, RFC3986).to_string()
}

/// `k=v&k=v` of the encoded parameters sorted by name, without `Signature`.
pub fn canonicalized_query(params: &BTreeMap<String, String>) -> String {
    params
        .iter()
        .filter(|(k, _)| k.as_str() != "Signature")
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `METHOD&%2F&percentEncode(canonicalized)`
pub fn string_to_sign(method: &str, params: &BTreeMap<String, String>) -> String {
    format!(
        "{}&{}&{}",
        method,
        percent_encode("/"),
        percent_encode(&canonicalized_query(params))
    )
}

/// `Base64(HMAC-SHA1(secret + "&", StringToSign))`
pub fn sign(method: &str, params: &BTreeMap<String, String>, access_key_secret: &str) -> String {
    let key = format!("{access_key_secret}&");
    let mut mac = match Hmac::<Sha1>::new_from_slice(key.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(string_to_sign(method, params).as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// `2017-07-12T02:42:19Z`
pub fn format_timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The parameters every RPC call carries besides its own (no `Signature`
/// yet): one home for the SMS (`dysmsapi`) and voice (`dyvmsapi`) requests,
/// which share API version `2017-05-25` and the signature.
pub(crate) fn rpc_params(
    access_key_id: &str,
    action: &str,
    region_id: &str,
    nonce: &str,
    now: DateTime<Utc>,
) -> BTreeMap<String, String> {
    let mut params: BTreeMap<String, String> = [
        ("AccessKeyId", access_key_id),
        ("Action", action),
        ("Format", "JSON"),
        ("RegionId", region_id),
        ("SignatureMethod", SIGNATURE_METHOD),
        ("SignatureNonce", nonce),
        ("SignatureVersion", SIGNATURE_VERSION),
        ("Version", API_VERSION),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    params.insert("Timestamp".into(), format_timestamp(now));
    params
}

/// `POST` of signed RPC parameters as a form body (never in the URL: numbers
/// and parameters stay out of access logs).
pub(crate) fn rpc_request(
    client: &reqwest::Client,
    endpoint: &url::Url,
    signed: &BTreeMap<String, String>,
) -> reqwest::RequestBuilder {
    let body = signed
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    client
        .post(endpoint.clone())
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(reqwest::header::ACCEPT, "application/json")
        .body(body)
}

/// Sends through Alibaba Cloud SMS.
#[derive(Debug)]
pub struct AliyunProvider {
    endpoint: url::Url,
    access_key_id: String,
    access_key_secret: Secret,
    sign_name: String,
    region_id: String,
    templates: TemplateTable,
    client: reqwest::Client,
}

impl AliyunProvider {
    pub fn new(config: AliyunConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            endpoint: parse_endpoint("aliyun endpoint", &config.endpoint)?,
            access_key_id: config.access_key_id,
            access_key_secret: config.access_key_secret,
            sign_name: config.sign_name,
            region_id: config.region_id,
            templates: TemplateTable::new(config.templates)?,
            client: config.http.client()?,
        })
    }

    /// The signed parameters of a `SendSms` request (including `Signature`).
    pub fn signed_params(
        &self,
        message: &SmsMessage,
        nonce: &str,
        now: DateTime<Utc>,
    ) -> Result<BTreeMap<String, String>, SmsError> {
        let resolved = self.templates.resolve(PROVIDER, message)?;
        let template_code = resolved.id;
        let values = resolved.values;
        let template_param: serde_json::Map<String, serde_json::Value> = values
            .into_iter()
            .map(|(k, v)| (k.to_owned(), serde_json::Value::String(v)))
            .collect();
        let mut params = rpc_params(&self.access_key_id, "SendSms", &self.region_id, nonce, now);
        for (k, v) in [
            ("PhoneNumbers", message.phone.without_plus_or_86()),
            ("SignName", self.sign_name.as_str()),
            ("TemplateCode", template_code),
            ("OutId", message.idempotency_key.as_str()),
        ] {
            params.insert(k.to_owned(), v.to_owned());
        }
        params.insert(
            "TemplateParam".into(),
            serde_json::Value::Object(template_param).to_string(),
        );
        let signature = sign("POST", &params, self.access_key_secret.expose());
        params.insert("Signature".into(), signature);
        Ok(params)
    }

    // Ids only: never the number, the text or the parameters.
    #[tracing::instrument(
        name = "sms.send",
        skip_all,
        fields(provider = PROVIDER, idempotency_key = %message.idempotency_key)
    )]
    async fn send_one(&self, message: &SmsMessage) -> Result<SmsAccepted, SmsError> {
        let nonce = uuid::Uuid::new_v4().to_string();
        let params = self.signed_params(message, &nonce, Utc::now())?;
        let request = rpc_request(&self.client, &self.endpoint, &params);
        exchange(PROVIDER, request, interpret_response).await
    }
}

crate::provider::templated_sms_provider!(AliyunProvider);

/// The `SendSms` response (and the shape of its errors).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SendSmsResponse {
    pub code: Option<String>,
    pub message: Option<String>,
    pub biz_id: Option<String>,
    pub request_id: Option<String>,
}

fn interpret_response(status: u16, body: &[u8]) -> Result<SmsAccepted, SmsError> {
    let Ok(parsed) = serde_json::from_slice::<SendSmsResponse>(body) else {
        return Err(SmsError::from_status(PROVIDER, status, excerpt(body)));
    };
    let Some(code) = parsed.code else {
        return Err(SmsError::from_status(PROVIDER, status, excerpt(body)));
    };
    let message = parsed.message.unwrap_or_default();
    if code == "OK" && (200..300).contains(&status) {
        return match parsed.biz_id {
            Some(biz_id) if !biz_id.is_empty() => Ok(SmsAccepted {
                provider: PROVIDER,
                provider_message_id: biz_id,
            }),
            _ => Err(SmsError::transient(
                PROVIDER,
                TransientKind::UnexpectedResponse,
                code,
                "Code OK without BizId",
            )),
        };
    }
    Err(classify(&code, status, message))
}

/// Classifies an Alibaba Cloud error `Code` (see the module docs).
pub fn classify(code: &str, http_status: u16, message: String) -> SmsError {
    use PermanentKind as P;
    use TransientKind as T;
    let permanent = |kind| SmsError::permanent(PROVIDER, kind, code, message.clone());
    let transient = |kind| SmsError::transient(PROVIDER, kind, code, message.clone());
    match code {
        "isv.MOBILE_NUMBER_ILLEGAL"
        | "isv.MOBILE_COUNT_OVER_LIMIT"
        | "isv.DOMESTIC_NUMBER_NOT_SUPPORTED" => permanent(P::InvalidNumber),
        "isv.BLACK_KEY_CONTROL_LIMIT" => permanent(P::RecipientBlocked),
        "isv.SMS_TEMPLATE_ILLEGAL"
        | "isv.TEMPLATE_MISSING_PARAMETERS"
        | "isv.TEMPLATE_PARAMS_ILLEGAL"
        | "isv.INVALID_JSON_PARAM"
        | "isv.INVALID_PARAMETERS"
        | "isv.PARAM_LENGTH_LIMIT"
        | "isv.PARAM_NOT_SUPPORT_URL"
        | "isv.SMS_SIGNATURE_SCENE_ILLEGAL" => permanent(P::TemplateRejected),
        "isv.SMS_SIGNATURE_ILLEGAL" | "isv.SMS_SIGN_ILLEGAL" | "isv.SIGN_STATE_ILLEGAL" => {
            permanent(P::SignNameRejected)
        }
        "isv.SMS_CONTENT_ILLEGAL" | "isv.EXTEND_CODE_ERROR" => permanent(P::ContentRejected),
        "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "InvalidAccessKeyId.NotFound"
        | "InvalidAccessKeyId.Inactive"
        | "InvalidTimeStamp.Expired"
        | "isp.RAM_PERMISSION_DENY"
        | "Forbidden.RAM"
        | "isv.ACCOUNT_NOT_EXISTS" => permanent(P::AuthFailure),
        "isv.AMOUNT_NOT_ENOUGH"
        | "isv.OUT_OF_SERVICE"
        | "isv.PRODUCT_UN_SUBSCRIPT"
        | "isv.PRODUCT_UNSUBSCRIBE"
        | "isv.ACCOUNT_ABNORMAL"
        | "isv.DENY_IP_RANGE" => permanent(P::AccountUnavailable),
        "isv.BUSINESS_LIMIT_CONTROL"
        | "isv.DAY_LIMIT_CONTROL"
        | "isv.MONTH_LIMIT_CONTROL"
        | "Throttling"
        | "Throttling.User"
        | "Throttling.Api" => transient(T::Throttled),
        // A fresh nonce is generated for every attempt.
        "SignatureNonceUsed" => transient(T::Unclassified),
        "isp.SYSTEM_ERROR" | "InternalError" | "ServiceUnavailable" => transient(T::ServerError),
        _ if (500..600).contains(&http_status) => transient(T::ServerError),
        _ => transient(T::Unclassified),
    }
}

#[derive(Deserialize)]
struct Report {
    success: bool,
    err_code: Option<String>,
    err_msg: Option<String>,
    biz_id: Option<String>,
    out_id: Option<String>,
    report_time: Option<String>,
}

/// Parses an HTTP-pushed `SmsReport` body (JSON array; one push may carry
/// several reports). `phone_number`, `send_time` and `sms_size` are read
/// past, not kept.
pub fn parse_sms_report(body: &[u8]) -> Result<Vec<DeliveryReceipt>, ReceiptError> {
    let reports: Vec<Report> = serde_json::from_slice(body)?;
    Ok(reports
        .into_iter()
        .map(|r| {
            let status = if r.success {
                DeliveryStatus::Delivered
            } else {
                let code = r.err_code.clone().unwrap_or_default();
                let msg = r.err_msg.clone().unwrap_or_default();
                DeliveryStatus::Failed {
                    reason: match (code.is_empty(), msg.is_empty()) {
                        (false, false) => format!("{code}: {msg}"),
                        (false, true) => code,
                        _ => msg,
                    },
                }
            };
            DeliveryReceipt {
                provider: PROVIDER,
                provider_message_id: non_empty(r.biz_id),
                idempotency_key: non_empty(r.out_id),
                status,
                provider_code: non_empty(r.err_code),
                reported_at: parse_provider_time(r.report_time.as_deref()),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// "Signature mechanism", worked example (ECS DescribeRegions).
    #[test]
    fn signature_reproduces_the_documented_describe_regions_example() {
        let p = params(&[
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Format", "XML"),
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("Version", "2014-05-26"),
            ("SignatureVersion", "1.0"),
        ]);
        assert_eq!(
            string_to_sign("GET", &p),
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML\
             %26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf\
             %26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
        );
        assert_eq!(
            sign("GET", &p, "testsecret"),
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        );
    }

    /// The SMS walkthrough's example (SendSms with a Chinese SignName).
    #[test]
    fn signature_reproduces_the_documented_send_sms_example() {
        let p = params(&[
            ("AccessKeyId", "testId"),
            ("Action", "SendSms"),
            ("Format", "XML"),
            ("OutId", "123"),
            ("PhoneNumbers", "15300000001"),
            ("RegionId", "cn-hangzhou"),
            ("SignName", "阿里云短信测试专用"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "45e25e9b-0a6f-4070-8c85-2956eda1b466"),
            ("SignatureVersion", "1.0"),
            ("TemplateCode", "SMS_71390007"),
            ("TemplateParam", r#"{"customer":"test"}"#),
            ("Timestamp", "2017-07-12T02:42:19Z"),
            ("Version", "2017-05-25"),
        ]);
        assert_eq!(
            canonicalized_query(&p),
            "AccessKeyId=testId&Action=SendSms&Format=XML&OutId=123&PhoneNumbers=15300000001\
             &RegionId=cn-hangzhou&SignName=%E9%98%BF%E9%87%8C%E4%BA%91%E7%9F%AD%E4%BF%A1%E6%B5%8B%E8%AF%95%E4%B8%93%E7%94%A8\
             &SignatureMethod=HMAC-SHA1&SignatureNonce=45e25e9b-0a6f-4070-8c85-2956eda1b466&SignatureVersion=1.0\
             &TemplateCode=SMS_71390007&TemplateParam=%7B%22customer%22%3A%22test%22%7D\
             &Timestamp=2017-07-12T02%3A42%3A19Z&Version=2017-05-25"
        );
        assert_eq!(
            sign("GET", &p, "testSecret"),
            "zJDF+Lrzhj/ThnlvIToysFRq6t4="
        );
    }

    #[test]
    fn percent_encoding_follows_rfc3986_not_form_encoding() {
        assert_eq!(percent_encode("a b"), "a%20b");
        assert_eq!(percent_encode("*"), "%2A");
        assert_eq!(percent_encode("~-_."), "~-_.");
        assert_eq!(percent_encode("+/=&"), "%2B%2F%3D%26");
        assert_eq!(percent_encode("派"), "%E6%B4%BE");
    }

    #[test]
    fn the_signature_parameter_itself_is_not_signed() {
        let mut p = params(&[("A", "1")]);
        let before = sign("POST", &p, "s");
        p.insert("Signature".into(), "old".into());
        assert_eq!(sign("POST", &p, "s"), before);
    }

    #[test]
    fn error_codes_are_classified() {
        let kind = |code: &str| classify(code, 200, String::new());
        assert_eq!(
            kind("isv.MOBILE_NUMBER_ILLEGAL").permanent_kind(),
            Some(PermanentKind::InvalidNumber)
        );
        assert_eq!(
            kind("isv.SMS_TEMPLATE_ILLEGAL").permanent_kind(),
            Some(PermanentKind::TemplateRejected)
        );
        assert_eq!(
            kind("isv.AMOUNT_NOT_ENOUGH").permanent_kind(),
            Some(PermanentKind::AccountUnavailable)
        );
        assert_eq!(
            kind("isp.RAM_PERMISSION_DENY").permanent_kind(),
            Some(PermanentKind::AuthFailure)
        );
        assert_eq!(
            kind("isv.BUSINESS_LIMIT_CONTROL").transient_kind(),
            Some(TransientKind::Throttled)
        );
        assert_eq!(
            kind("isp.SYSTEM_ERROR").transient_kind(),
            Some(TransientKind::ServerError)
        );
        assert_eq!(
            kind("isv.SOMETHING_NEW").transient_kind(),
            Some(TransientKind::Unclassified)
        );
    }

    #[test]
    fn the_documented_sms_report_is_parsed_into_receipts() {
        // Example body from the SmsReport HTTP push documentation, plus a failure.
        let body = r#"[
          {"phone_number":"1381111****","send_time":"2017-01-01 00:00:00",
           "report_time":"2017-01-01 00:00:00","success":true,"err_code":"DELIVERED",
           "err_msg":"用户接收成功","sms_size":"1","biz_id":"12345","out_id":"67890"},
          {"phone_number":"1381111****","send_time":"2017-01-01 00:00:00",
           "report_time":"2017-01-01 00:00:05","success":false,"err_code":"MK:0001",
           "err_msg":"空号","sms_size":"1","biz_id":"12346","out_id":"67891"}
        ]"#;
        let receipts = parse_sms_report(body.as_bytes()).unwrap();
        assert_eq!(receipts.len(), 2);
        assert_eq!(receipts[0].status, DeliveryStatus::Delivered);
        assert_eq!(receipts[0].provider_message_id.as_deref(), Some("12345"));
        assert_eq!(receipts[0].idempotency_key.as_deref(), Some("67890"));
        assert_eq!(
            receipts[0].reported_at.unwrap().to_string(),
            "2017-01-01 00:00:00"
        );
        assert_eq!(
            receipts[1].status,
            DeliveryStatus::Failed {
                reason: "MK:0001: 空号".into()
            }
        );
    }

    #[test]
    fn a_report_that_is_not_an_array_is_an_error() {
        assert!(parse_sms_report(br#"{"success":true}"#).is_err());
    }
}
