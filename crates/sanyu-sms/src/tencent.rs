//! Tencent Cloud SMS (API 3.0, version 2021-01-11), action `SendSms`.
//!
//! # Signature (TC3-HMAC-SHA256)
//!
//! From "Signature v3" / "签名方法 v3", published identically for every
//! product (e.g. cloud.tencent.com/document/product/213/30654,
//! tencentcloud.com/document/product/1026/31038):
//!
//! ```text
//! CanonicalRequest = Method \n "/" \n CanonicalQueryString \n
//!                    CanonicalHeaders \n SignedHeaders \n hex(SHA256(payload))
//!   CanonicalHeaders: "name:value\n" per signed header, names and values
//!                     lower-cased and trimmed, sorted by name
//!   (POST: CanonicalQueryString is empty)
//! StringToSign     = "TC3-HMAC-SHA256" \n Timestamp \n Date/service/tc3_request \n
//!                    hex(SHA256(CanonicalRequest))        (Date = UTC date of Timestamp)
//! SecretDate       = HMAC-SHA256("TC3" + SecretKey, Date)
//! SecretService    = HMAC-SHA256(SecretDate, service)
//! SecretSigning    = HMAC-SHA256(SecretService, "tc3_request")
//! Signature        = hex(HMAC-SHA256(SecretSigning, StringToSign))
//! Authorization    = "TC3-HMAC-SHA256 Credential=" SecretId "/" Date "/" service "/tc3_request, "
//!                    "SignedHeaders=" SignedHeaders ", Signature=" Signature
//! ```
//!
//! Both of the document's worked examples (GET, timestamp 1539084154,
//! signature `5da7a33f…`; POST JSON, timestamp 1551113065, signature
//! `72e494ea…`; SecretKey `Gu5t9xGARNpq86cd98joQYCN3EXAMPLE`) are
//! known-answer tests below.
//!
//! # Request
//!
//! `POST /` with `Content-Type: application/json; charset=utf-8` (signed
//! exactly as sent), `Host`, `X-TC-Action: SendSms`, `X-TC-Timestamp`,
//! `X-TC-Version: 2021-01-11`, `X-TC-Region`, and the body
//! `{"PhoneNumberSet":["+86…"],"SmsSdkAppId":…,"SignName":…,"TemplateId":…,
//! "TemplateParamSet":[…],"SessionContext":<idempotency key>}`
//! (SendSms, tencentcloud.com/document/api/382/40536).
//!
//! # Response and error classes
//!
//! Errors come with HTTP 200 in `Response.Error{Code,Message}` for the whole
//! request, or per number in `Response.SendStatusSet[].Code` (`"Ok"` on
//! success). [`classify`] maps both (codes from "Error Codes",
//! tencentcloud.com/document/api/382/40474 and the SMS error list
//! cloud.tencent.com/document/api/382/59177): `AuthFailure.*` and
//! `UnauthorizedOperation.*` permanent auth failures; phone, template,
//! signature (签名) and content codes permanent; `LimitExceeded.*` and
//! `RequestLimitExceeded*` transient/throttled; `InternalError.*` transient.
//!
//! # Delivery receipts
//!
//! [`parse_status_callback`] reads the status callback body (a JSON array,
//! tencentcloud.com/document/api/382/43547); answer it with [`CALLBACK_ACK`].

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{ConfigError, PermanentKind, ReceiptError, SmsError, TransientKind};
use crate::message::{SmsAccepted, SmsMessage};
use crate::provider::{
    ApprovedTemplate, HttpSettings, SendFuture, SmsProvider, TemplateTable, excerpt, exchange,
    parse_endpoint,
};
use crate::receipt::{DeliveryReceipt, DeliveryStatus, non_empty, parse_provider_time};
use crate::secret::Secret;

pub const PROVIDER: &str = "tencent";
pub const DEFAULT_ENDPOINT: &str = "https://sms.tencentcloudapi.com/";
pub const SERVICE: &str = "sms";
pub const ACTION: &str = "SendSms";
pub const API_VERSION: &str = "2021-01-11";
pub const ALGORITHM: &str = "TC3-HMAC-SHA256";
pub const CONTENT_TYPE: &str = "application/json; charset=utf-8";
/// The body Tencent Cloud expects back from a status callback.
pub const CALLBACK_ACK: &str = r#"{"result":0,"errmsg":"OK"}"#;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TencentConfig {
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    pub secret_id: String,
    pub secret_key: Secret,
    #[serde(default = "default_region")]
    pub region: String,
    /// `SmsSdkAppId`, e.g. `1400006666`.
    pub sms_sdk_app_id: String,
    /// The approved SMS signature (签名).
    pub sign_name: String,
    pub templates: Vec<ApprovedTemplate>,
    #[serde(default)]
    pub http: HttpSettings,
}

fn default_endpoint() -> String {
    DEFAULT_ENDPOINT.to_owned()
}

/// The region a configuration that names none uses (voice calls too).
pub(crate) fn default_region() -> String {
    "ap-guangzhou".to_owned()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The UTC date (`2019-02-25`) of a unix timestamp, as the credential scope
/// needs it. `None` for timestamps chrono cannot represent.
pub fn utc_date(timestamp: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp(timestamp, 0).map(|d| d.format("%Y-%m-%d").to_string())
}

/// The canonical request and the `SignedHeaders` value. `headers` are the
/// signed headers as `(name, value)`, in any order and case.
pub fn canonical_request(
    method: &str,
    canonical_query: &str,
    headers: &[(&str, &str)],
    payload: &[u8],
) -> (String, String) {
    let mut normalized: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.trim().to_lowercase(), v.trim().to_lowercase()))
        .collect();
    normalized.sort();
    let canonical_headers: String = normalized
        .iter()
        .map(|(n, v)| format!("{n}:{v}\n"))
        .collect();
    let signed_headers = normalized
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical = format!(
        "{method}\n/\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{}",
        sha256_hex(payload)
    );
    (canonical, signed_headers)
}

/// `TC3-HMAC-SHA256\n<timestamp>\n<date>/<service>/tc3_request\n<hex sha256 canonical>`
pub fn string_to_sign(timestamp: i64, date: &str, service: &str, canonical: &str) -> String {
    format!(
        "{ALGORITHM}\n{timestamp}\n{date}/{service}/tc3_request\n{}",
        sha256_hex(canonical.as_bytes())
    )
}

/// `hex(HMAC(SecretSigning, StringToSign))` with the derived key chain.
pub fn signature(secret_key: &str, date: &str, service: &str, string_to_sign: &str) -> String {
    let secret_date = hmac_sha256(format!("TC3{secret_key}").as_bytes(), date.as_bytes());
    let secret_service = hmac_sha256(&secret_date, service.as_bytes());
    let secret_signing = hmac_sha256(&secret_service, b"tc3_request");
    hex::encode(hmac_sha256(&secret_signing, string_to_sign.as_bytes()))
}

/// The `Authorization` header value.
pub fn authorization(
    secret_id: &str,
    date: &str,
    service: &str,
    signed_headers: &str,
    signature: &str,
) -> String {
    format!(
        "{ALGORITHM} Credential={secret_id}/{date}/{service}/tc3_request, \
         SignedHeaders={signed_headers}, Signature={signature}"
    )
}

/// The `SendSms` request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SendSmsRequest {
    pub phone_number_set: Vec<String>,
    pub sms_sdk_app_id: String,
    pub sign_name: String,
    pub template_id: String,
    pub template_param_set: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_context: Option<String>,
}

/// Sends through Tencent Cloud SMS.
#[derive(Debug)]
pub struct TencentProvider {
    signer: Tc3Signer,
    sms_sdk_app_id: String,
    sign_name: String,
    templates: TemplateTable,
    client: reqwest::Client,
}

/// The `Host` header as the HTTP client will send it for `endpoint`: the
/// port only when it is not the scheme's default (which `Url::port` already
/// omits). It is a signed header, so it must match what goes on the wire.
pub(crate) fn host_header(field: &'static str, endpoint: &url::Url) -> Result<String, ConfigError> {
    match (endpoint.host_str(), endpoint.port()) {
        (Some(h), Some(p)) => Ok(format!("{h}:{p}")),
        (Some(h), None) => Ok(h.to_owned()),
        (None, _) => Err(ConfigError::InvalidUrl {
            field,
            reason: "no host".into(),
        }),
    }
}

/// Who signs an API 3.0 request, and where it goes: one home for the TC3
/// request of every Tencent Cloud product Sanyu calls (SMS `sms`, voice `vms`).
#[derive(Debug)]
pub(crate) struct Tc3Signer {
    pub(crate) endpoint: url::Url,
    pub(crate) host: String,
    pub(crate) secret_id: String,
    pub(crate) secret_key: Secret,
    pub(crate) region: String,
}

/// One API 3.0 call: the product's service name (credential scope), action and version.
pub(crate) struct Tc3Call {
    pub(crate) service: &'static str,
    pub(crate) action: &'static str,
    pub(crate) version: &'static str,
}

impl Tc3Signer {
    /// `POST /` with the JSON `body`, signed TC3-HMAC-SHA256 over
    /// `content-type` and `host` at `now`.
    pub(crate) fn request(
        &self,
        client: &reqwest::Client,
        call: &Tc3Call,
        body: Vec<u8>,
        now: DateTime<Utc>,
    ) -> reqwest::RequestBuilder {
        let timestamp = now.timestamp();
        let date = now.format("%Y-%m-%d").to_string();
        let (canonical, signed_headers) = canonical_request(
            "POST",
            "",
            &[("content-type", CONTENT_TYPE), ("host", &self.host)],
            &body,
        );
        let to_sign = string_to_sign(timestamp, &date, call.service, &canonical);
        let signature = signature(self.secret_key.expose(), &date, call.service, &to_sign);
        let authorization = authorization(
            &self.secret_id,
            &date,
            call.service,
            &signed_headers,
            &signature,
        );
        client
            .post(self.endpoint.clone())
            .header(reqwest::header::AUTHORIZATION, authorization)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .header("X-TC-Action", call.action)
            .header("X-TC-Timestamp", timestamp.to_string())
            .header("X-TC-Version", call.version)
            .header("X-TC-Region", self.region.as_str())
            .body(body)
    }
}

const SEND_SMS: Tc3Call = Tc3Call {
    service: SERVICE,
    action: ACTION,
    version: API_VERSION,
};

impl TencentProvider {
    pub fn new(config: TencentConfig) -> Result<Self, ConfigError> {
        let endpoint = parse_endpoint("tencent endpoint", &config.endpoint)?;
        Ok(Self {
            signer: Tc3Signer {
                host: host_header("tencent endpoint", &endpoint)?,
                endpoint,
                secret_id: config.secret_id,
                secret_key: config.secret_key,
                region: config.region,
            },
            sms_sdk_app_id: config.sms_sdk_app_id,
            sign_name: config.sign_name,
            templates: TemplateTable::new(config.templates)?,
            client: config.http.client()?,
        })
    }

    fn body(&self, message: &SmsMessage) -> Result<Vec<u8>, SmsError> {
        let resolved = self.templates.resolve(PROVIDER, message)?;
        let template_id = resolved.id;
        let values = resolved.values;
        let request = SendSmsRequest {
            phone_number_set: vec![message.phone.e164().to_owned()],
            sms_sdk_app_id: self.sms_sdk_app_id.clone(),
            sign_name: self.sign_name.clone(),
            template_id: template_id.to_owned(),
            template_param_set: values.into_iter().map(|(_, v)| v).collect(),
            session_context: Some(message.idempotency_key.clone()),
        };
        serde_json::to_vec(&request).map_err(|e| {
            SmsError::permanent(PROVIDER, PermanentKind::BadRequest, "encode", e.to_string())
        })
    }

    // Ids only: never the number, the text or the parameters.
    #[tracing::instrument(
        name = "sms.send",
        skip_all,
        fields(provider = PROVIDER, idempotency_key = %message.idempotency_key)
    )]
    async fn send_one(&self, message: &SmsMessage) -> Result<SmsAccepted, SmsError> {
        let body = self.body(message)?;
        let request = self
            .signer
            .request(&self.client, &SEND_SMS, body, Utc::now());
        exchange(PROVIDER, request, interpret_response).await
    }
}

crate::provider::templated_sms_provider!(TencentProvider);

/// `{"Response": {...}}`
#[derive(Debug, Deserialize)]
pub struct Envelope {
    #[serde(rename = "Response")]
    pub response: ResponseBody,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResponseBody {
    pub send_status_set: Option<Vec<SendStatus>>,
    pub error: Option<ApiError>,
    pub request_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ApiError {
    pub code: String,
    #[serde(default)]
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SendStatus {
    pub serial_no: Option<String>,
    pub phone_number: Option<String>,
    pub session_context: Option<String>,
    pub code: String,
    #[serde(default)]
    pub message: String,
}

fn interpret_response(status: u16, body: &[u8]) -> Result<SmsAccepted, SmsError> {
    let Ok(envelope) = serde_json::from_slice::<Envelope>(body) else {
        return Err(SmsError::from_status(PROVIDER, status, excerpt(body)));
    };
    let response = envelope.response;
    if let Some(error) = response.error {
        return Err(classify(&error.code, error.message));
    }
    if !(200..300).contains(&status) {
        return Err(SmsError::from_status(PROVIDER, status, excerpt(body)));
    }
    // One number per request, so one status.
    let Some(first) = response.send_status_set.and_then(|s| s.into_iter().next()) else {
        return Err(SmsError::transient(
            PROVIDER,
            TransientKind::UnexpectedResponse,
            format!("http_{status}"),
            "response without Error or SendStatusSet",
        ));
    };
    if first.code != "Ok" {
        return Err(classify(&first.code, first.message));
    }
    match first.serial_no {
        Some(serial_no) if !serial_no.is_empty() => Ok(SmsAccepted {
            provider: PROVIDER,
            provider_message_id: serial_no,
        }),
        _ => Err(SmsError::transient(
            PROVIDER,
            TransientKind::UnexpectedResponse,
            "Ok",
            "Code Ok without SerialNo",
        )),
    }
}

/// Classifies a Tencent Cloud error code, from `Response.Error.Code` or from
/// `SendStatusSet[].Code` (see the module docs).
pub fn classify(code: &str, message: String) -> SmsError {
    use PermanentKind as P;
    use TransientKind as T;
    let permanent = |kind| SmsError::permanent(PROVIDER, kind, code, message.clone());
    let transient = |kind| SmsError::transient(PROVIDER, kind, code, message.clone());
    match code {
        "InvalidParameterValue.IncorrectPhoneNumber"
        | "UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber"
        | "UnsupportedOperation.UnsupportedRegion" => permanent(P::InvalidNumber),
        "FailedOperation.PhoneNumberInBlacklist" => permanent(P::RecipientBlocked),
        "FailedOperation.TemplateIncorrectOrUnapproved"
        | "FailedOperation.TemplateParamSetNotMatchApprovedTemplate"
        | "InvalidParameterValue.TemplateParameterFormatError"
        | "InvalidParameterValue.TemplateParameterLengthLimit" => permanent(P::TemplateRejected),
        "FailedOperation.SignatureIncorrectOrUnapproved" => permanent(P::SignNameRejected),
        "FailedOperation.ContainSensitiveWord"
        | "InvalidParameterValue.ProhibitedUseUrlInTemplateParameter"
        | "InvalidParameterValue.ContentLengthLimit"
        | "FailedOperation.MarketingSendTimeConstraint" => permanent(P::ContentRejected),
        "FailedOperation.InsufficientBalanceInSmsPackage"
        | "UnauthorizedOperation.ServiceSuspendDueToArrears" => permanent(P::AccountUnavailable),
        "InternalError.SigVerificationFail" => permanent(P::AuthFailure),
        "LimitExceeded.PhoneNumberCountLimit"
        | "InvalidParameterValue.SdkAppIdNotExist"
        | "FailedOperation.FailResolvePacket"
        | "InvalidAction"
        | "NoSuchVersion" => permanent(P::BadRequest),
        c if c.starts_with("AuthFailure") || c.starts_with("UnauthorizedOperation") => {
            permanent(P::AuthFailure)
        }
        c if c.starts_with("LimitExceeded") || c.starts_with("RequestLimitExceeded") => {
            transient(T::Throttled)
        }
        c if c.starts_with("InternalError") => transient(T::ServerError),
        c if c.starts_with("InvalidParameter") || c.starts_with("MissingParameter") => {
            permanent(P::BadRequest)
        }
        _ => transient(T::Unclassified),
    }
}

#[derive(Deserialize)]
struct Callback {
    report_status: String,
    errmsg: Option<String>,
    description: Option<String>,
    sid: Option<String>,
    user_receive_time: Option<String>,
}

/// Parses a status callback body (JSON array; one callback may carry
/// several results). `mobile` and `nationcode` are read past, not kept.
pub fn parse_status_callback(body: &[u8]) -> Result<Vec<DeliveryReceipt>, ReceiptError> {
    let callbacks: Vec<Callback> = serde_json::from_slice(body)?;
    callbacks
        .into_iter()
        .map(|c| {
            let status = match c.report_status.as_str() {
                "SUCCESS" => DeliveryStatus::Delivered,
                "FAIL" => {
                    let code = c.errmsg.clone().unwrap_or_default();
                    let text = c.description.clone().unwrap_or_default();
                    DeliveryStatus::Failed {
                        reason: match (code.is_empty(), text.is_empty()) {
                            (false, false) => format!("{code}: {text}"),
                            (false, true) => code,
                            _ => text,
                        },
                    }
                }
                other => return Err(ReceiptError::UnknownStatus(other.to_owned())),
            };
            Ok(DeliveryReceipt {
                provider: PROVIDER,
                provider_message_id: non_empty(c.sid),
                idempotency_key: None,
                status,
                provider_code: non_empty(c.errmsg),
                reported_at: parse_provider_time(c.user_receive_time.as_deref()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
