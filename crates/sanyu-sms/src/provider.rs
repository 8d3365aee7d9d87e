//! The provider trait, its configuration and the factory.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::Deserialize;

use crate::aliyun::{AliyunConfig, AliyunProvider};
use crate::error::{ConfigError, PermanentKind, SmsError};
use crate::message::{SmsAccepted, SmsMessage};
use crate::templates::{Audience, Locale};
use crate::tencent::{TencentConfig, TencentProvider};
use crate::webhook::{WebhookConfig, WebhookProvider};

/// The future a provider returns from [`SmsProvider::send`].
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<SmsAccepted, SmsError>> + Send + 'a>>;

/// Sends one provider request and lets `interpret` read the reply (each provider
/// answers in its own shape); failing to send it or to read the reply is a transport error.
pub(crate) async fn exchange(
    provider: &'static str,
    request: reqwest::RequestBuilder,
    interpret: fn(u16, &[u8]) -> Result<SmsAccepted, SmsError>,
) -> Result<SmsAccepted, SmsError> {
    let response = request
        .send()
        .await
        .map_err(|e| SmsError::from_transport(provider, &e))?;
    let status = response.status().as_u16();
    let body = response
        .bytes()
        .await
        .map_err(|e| SmsError::from_transport(provider, &e))?;
    interpret(status, &body)
}

/// Something that sends one SMS. Object-safe: the notifier holds a
/// `Box<dyn SmsProvider>` built by [`build_provider`].
pub trait SmsProvider: Send + Sync {
    /// `webhook`, `aliyun` or `tencent`.
    fn name(&self) -> &'static str;

    /// Sends `message`. Exactly one HTTP request; retrying is the caller's
    /// decision, made on the [`SmsError`] class.
    fn send<'a>(&'a self, message: &'a SmsMessage) -> SendFuture<'a>;

    /// Whether this provider can send a message of `audience` in `locale`:
    /// always for the webhook (it sends the rendered text), only with an
    /// approved template of that audience and locale for Alibaba Cloud and
    /// Tencent Cloud.
    fn can_send(&self, _audience: Audience, _locale: Locale) -> bool {
        true
    }
}

/// [`SmsProvider`] for a cloud provider of approved templates: `$ty` has
/// `templates` ([`TemplateTable`]) and sends with its own `send_one`; the
/// module's `PROVIDER` is its name.
macro_rules! templated_sms_provider {
    ($ty:ty) => {
        impl SmsProvider for $ty {
            fn can_send(&self, audience: crate::Audience, locale: crate::Locale) -> bool {
                self.templates.has(audience, locale)
            }

            fn name(&self) -> &'static str {
                PROVIDER
            }

            fn send<'a>(&'a self, message: &'a SmsMessage) -> SendFuture<'a> {
                Box::pin(self.send_one(message))
            }
        }
    };
}
pub(crate) use templated_sms_provider;

/// Which provider, and its settings. In TOML:
///
/// ```toml
/// [sms]
/// kind = "tencent"
/// secret_id = "AKID…"
/// secret_key = "…"
/// sms_sdk_app_id = "1400006666"
/// sign_name = "某某中学"
///
/// [[sms.templates]]
/// audience = "staff"
/// locale = "zh-CN"
/// id = "1110"
/// params = ["school", "case_ref", "level", "time"]
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProviderConfig {
    Webhook(WebhookConfig),
    Aliyun(AliyunConfig),
    Tencent(TencentConfig),
}

impl ProviderConfig {
    /// The provider's HTTP settings (timeouts, request limit).
    pub fn http(&self) -> &HttpSettings {
        match self {
            Self::Webhook(c) => &c.http,
            Self::Aliyun(c) => &c.http,
            Self::Tencent(c) => &c.http,
        }
    }
}

/// Builds the configured provider.
pub fn build_provider(config: &ProviderConfig) -> Result<Box<dyn SmsProvider>, ConfigError> {
    Ok(match config {
        ProviderConfig::Webhook(c) => Box::new(WebhookProvider::new(c.clone())?),
        ProviderConfig::Aliyun(c) => Box::new(AliyunProvider::new(c.clone())?),
        ProviderConfig::Tencent(c) => Box::new(TencentProvider::new(c.clone())?),
    })
}

/// How Sanyu talks to a provider: its HTTP client's timeouts, and the
/// account's request limit.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(default)]
pub struct HttpSettings {
    pub connect_timeout_ms: u64,
    /// The whole request, connect to last byte. A timeout is a transient error.
    pub request_timeout_ms: u64,
    /// The requests per second the provider account allows (its QPS; 0: no
    /// limit). The notifier paces every message on this provider to it,
    /// critical ones too, rather than be answered "throttled"; per notifier
    /// process (with replicas, give each its share).
    pub max_per_second: u32,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 3_000,
            request_timeout_ms: 10_000,
            max_per_second: 0,
        }
    }
}

impl HttpSettings {
    pub(crate) fn client(&self) -> Result<reqwest::Client, ConfigError> {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(self.connect_timeout_ms))
            .timeout(Duration::from_millis(self.request_timeout_ms))
            // A signed request is for one URL; a redirect is an error, not a hint.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("sanyu-sms/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ConfigError::HttpClient)
    }
}

/// A template approved by Alibaba Cloud or Tencent Cloud, for one audience
/// and locale. `params` names which of the rendered parameters
/// ([`Audience::param_names`]) the approved template uses, in its order:
/// Tencent's `TemplateParamSet` is positional ({1}, {2}, …); Alibaba Cloud's
/// `TemplateParam` is a JSON object keyed by these names (`${school}`, …).
///
/// Neither provider allows a URL in a template variable (Tencent error
/// `InvalidParameterValue.ProhibitedUseUrlInTemplateParameter`, legacy code
/// 1048), so approved staff templates normally leave `link` out and staff
/// follow the email's link instead.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovedTemplate {
    pub audience: Audience,
    #[serde(default)]
    pub locale: Locale,
    /// `TemplateCode` (Alibaba Cloud, `SMS_…`) or `TemplateId` (Tencent Cloud).
    pub id: String,
    pub params: Vec<String>,
}

/// The approved templates of one provider, checked at build time.
#[derive(Debug, Clone)]
pub(crate) struct TemplateTable(Vec<ApprovedTemplate>);

impl TemplateTable {
    pub(crate) fn new(templates: Vec<ApprovedTemplate>) -> Result<Self, ConfigError> {
        for (i, t) in templates.iter().enumerate() {
            let allowed = t.audience.param_names();
            if let Some(bad) = t.params.iter().find(|p| !allowed.contains(&p.as_str())) {
                return Err(ConfigError::UnknownTemplateParam {
                    audience: t.audience.to_string(),
                    locale: t.locale.to_string(),
                    param: bad.clone(),
                    allowed: allowed.join(", "),
                });
            }
            if templates[..i]
                .iter()
                .any(|o| o.audience == t.audience && o.locale == t.locale)
            {
                return Err(ConfigError::DuplicateTemplate {
                    audience: t.audience.to_string(),
                    locale: t.locale.to_string(),
                });
            }
        }
        Ok(Self(templates))
    }

    /// Whether an approved template of `audience` in `locale` is configured.
    pub(crate) fn has(&self, audience: Audience, locale: Locale) -> bool {
        self.0
            .iter()
            .any(|t| t.audience == audience && t.locale == locale)
    }

    /// The approved template for the message and its parameter values in the
    /// template's order.
    pub(crate) fn resolve<'a>(
        &'a self,
        provider: &'static str,
        message: &SmsMessage,
    ) -> Result<ResolvedTemplate<'a>, SmsError> {
        let content = &message.content;
        let template = self
            .0
            .iter()
            .find(|t| t.audience == content.audience && t.locale == content.locale)
            .ok_or_else(|| {
                SmsError::permanent(
                    provider,
                    PermanentKind::BadRequest,
                    "template_not_configured",
                    format!(
                        "no approved template configured for {}",
                        content.template_name()
                    ),
                )
            })?;
        let mut values = Vec::with_capacity(template.params.len());
        for name in &template.params {
            let value = content.param(name).ok_or_else(|| {
                SmsError::permanent(
                    provider,
                    PermanentKind::BadRequest,
                    "template_param_missing",
                    format!("rendered message has no parameter `{name}`"),
                )
            })?;
            values.push((name.as_str(), value.to_owned()));
        }
        Ok(ResolvedTemplate {
            id: template.id.as_str(),
            values,
        })
    }
}

/// An approved template id and its parameter values, in the template's order.
pub(crate) struct ResolvedTemplate<'a> {
    pub(crate) id: &'a str,
    pub(crate) values: Vec<(&'a str, String)>,
}

pub(crate) fn parse_endpoint(field: &'static str, value: &str) -> Result<url::Url, ConfigError> {
    let url = url::Url::parse(value).map_err(|e| ConfigError::InvalidUrl {
        field,
        reason: e.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConfigError::InvalidUrl {
            field,
            reason: "must be an http(s) URL with a host".to_owned(),
        });
    }
    Ok(url)
}

/// A short, single-line excerpt of a response body for error reasons.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    one_line.trim().to_owned()
}
