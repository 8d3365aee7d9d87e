//! Sending: the SMS and the email of a request, each through its providers in
//! turn with retries and backoff (failover).

use super::*;

/// The outcome of sending on one channel (all providers, all attempts).
pub(super) enum Sent {
    Accepted {
        provider: &'static str,
        message_id: Option<String>,
        latency_ms: i64,
    },
    /// Every provider failed; `transient` when one of them may still work later.
    Failed {
        error: String,
        transient: bool,
    },
    OutOfTime(String),
    Deferred(Duration, String),
}

/// One thing to send and where.
pub(super) enum Target<'a> {
    Sms(&'a dyn SmsProvider, &'a SmsMessage, Option<&'a Pacer>),
    Voice(&'a dyn VoiceProvider, &'a SmsMessage, Option<&'a Pacer>),
    Im(&'a dyn sanyu_im::ImProvider, &'a sanyu_im::ImMessage),
    Email(&'a Mailer, &'a Message),
}

impl Target<'_> {
    /// The provider account's request limit, if it has one.
    pub(super) fn pacer(&self) -> Option<&Pacer> {
        match self {
            Target::Sms(_, _, pacer) | Target::Voice(_, _, pacer) => *pacer,
            Target::Im(..) | Target::Email(..) => None,
        }
    }

    pub(super) fn provider(&self) -> &'static str {
        match self {
            Target::Sms(p, ..) => p.name(),
            Target::Voice(p, ..) => p.name(),
            Target::Im(p, _) => p.name(),
            Target::Email(m, _) => m.provider_name(),
        }
    }

    /// One attempt: the provider's message id, or (transient?, reason).
    pub(super) async fn send(&self) -> Result<Option<String>, (bool, String)> {
        match self {
            Target::Sms(p, m, _) => p
                .send(m)
                .await
                .map(|a| Some(a.provider_message_id))
                .map_err(|e| (e.is_transient(), e.to_string())),
            Target::Voice(p, m, _) => p
                .call(m)
                .await
                .map(|a| Some(a.provider_message_id))
                .map_err(|e| (e.is_transient(), e.to_string())),
            Target::Im(p, m) => p
                .send(m)
                .await
                .map(|a| Some(a.message_id))
                .map_err(|e| (e.transient, e.to_string())),
            Target::Email(mailer, message) => mailer
                .send((*message).clone())
                .await
                .map(|()| None)
                .map_err(|e| match e {
                    SendError::Transient(r) => (true, r),
                    SendError::Permanent(r) => (false, r),
                }),
        }
    }
}

impl Deliverer {
    pub(super) async fn send_sms(
        &self,
        ctx: &Ctx<'_>,
        key: &str,
        deadline: Instant,
    ) -> Result<Sent, StoreError> {
        let channel = NotifyChannel::Sms;
        let phone = match self.phone_of(ctx, key, channel).await? {
            Ok(phone) => phone,
            Err(sent) => return Ok(sent),
        };
        let content = if ctx.reason == NotificationReason::SignInCode {
            self.sign_in_sms(ctx.req)
        } else if matches!(
            ctx.reason,
            NotificationReason::AckConfirmed | NotificationReason::AckRefused
        ) {
            self.ack_reply_sms(ctx.req, ctx.reason)
        } else {
            let Some(facts) = &ctx.facts else {
                return self
                    .impossible(
                        ctx,
                        key,
                        channel,
                        "school of the recipient not found".into(),
                    )
                    .await;
            };
            message::staff_sms(self.policy.locale, facts).map_err(|e| e.to_string())
        };
        let content = match content {
            Ok(c) => c,
            Err(e) => return self.impossible(ctx, key, channel, e).await,
        };
        let message = SmsMessage {
            phone,
            content,
            // The notification key: providers that honour idempotency
            // (webhook `Idempotency-Key`, Alibaba `OutId`, Tencent
            // `SessionContext`) see the same key on every retry.
            idempotency_key: ctx.req.notification_key.clone(),
        };
        let targets: Vec<Target<'_>> = self
            .sms
            .iter()
            .zip(&self.sms_pacers)
            .map(|(p, pacer)| Target::Sms(p.as_ref(), &message, pacer.as_ref()))
            .collect();
        self.send_with_failover(ctx, key, channel, &targets, deadline)
            .await
    }

    /// The recipient's mobile number, or the recorded impossibility of
    /// reaching them on `channel` without one.
    pub(super) async fn phone_of(
        &self,
        ctx: &Ctx<'_>,
        key: &str,
        channel: NotifyChannel,
    ) -> Result<Result<PhoneNumber, Sent>, StoreError> {
        let why = match &ctx.recipient {
            None => "recipient not found",
            Some(person) => match person.phone.as_deref().map(PhoneNumber::parse) {
                Some(Ok(phone)) => return Ok(Ok(phone)),
                Some(Err(_)) => "recipient has no valid mobile number",
                None => "recipient has no mobile number",
            },
        };
        Ok(Err(self.impossible(ctx, key, channel, why.into()).await?))
    }

    /// The recipient's mobile number and the text `compose` makes of the
    /// case's facts, for a message about a case to a phone (voice, work IM);
    /// or the recorded impossibility.
    async fn phone_and_text<T, E: std::fmt::Display>(
        &self,
        ctx: &Ctx<'_>,
        key: &str,
        channel: NotifyChannel,
        compose: impl FnOnce(&Facts) -> Result<T, E>,
    ) -> Result<Result<(PhoneNumber, T), Sent>, StoreError> {
        let phone = match self.phone_of(ctx, key, channel).await? {
            Ok(phone) => phone,
            Err(sent) => return Ok(Err(sent)),
        };
        let why = match ctx.facts.as_ref().map(compose) {
            Some(Ok(text)) => return Ok(Ok((phone, text))),
            Some(Err(e)) => e.to_string(),
            None => "school of the recipient not found".into(),
        };
        Ok(Err(self.impossible(ctx, key, channel, why).await?))
    }

    /// A text-to-speech call about a case: the staff SMS's school, level and
    /// case reference, spoken (see `sanyu_sms::voice`).
    pub(super) async fn send_voice(
        &self,
        ctx: &Ctx<'_>,
        key: &str,
        deadline: Instant,
    ) -> Result<Sent, StoreError> {
        let channel = NotifyChannel::Voice;
        let Some(provider) = &self.voice else {
            return self
                .impossible(ctx, key, channel, "no voice provider configured".into())
                .await;
        };
        let locale = self.policy.locale;
        let composed =
            self.phone_and_text(ctx, key, channel, |facts| message::staff_sms(locale, facts));
        let (phone, content) = match composed.await? {
            Ok(found) => found,
            Err(sent) => return Ok(sent),
        };
        let message = SmsMessage {
            phone,
            content,
            // Alibaba `OutId` / Tencent `SessionContext`: echoed in call reports.
            idempotency_key: ctx.req.notification_key.clone(),
        };
        let targets = [Target::Voice(
            provider.as_ref(),
            &message,
            self.voice_pacer.as_ref(),
        )];
        self.send_with_failover(ctx, key, channel, &targets, deadline)
            .await
    }

    /// A WeCom or DingTalk message about a case: school, level, reference,
    /// time and the link (`sanyu_sms::render_staff_im`).
    pub(super) async fn send_im(
        &self,
        ctx: &Ctx<'_>,
        key: &str,
        deadline: Instant,
    ) -> Result<Sent, StoreError> {
        let channel = NotifyChannel::Im;
        let Some(provider) = &self.im else {
            return self
                .impossible(ctx, key, channel, "no work-IM platform configured".into())
                .await;
        };
        let locale = self.policy.locale;
        let composed =
            self.phone_and_text(ctx, key, channel, |facts| message::staff_im(locale, facts));
        let (phone, text) = match composed.await? {
            Ok(found) => found,
            Err(sent) => return Ok(sent),
        };
        let message = sanyu_im::ImMessage {
            phone,
            text,
            idempotency_key: ctx.req.notification_key.clone(),
        };
        let targets = [Target::Im(provider.as_ref(), &message)];
        self.send_with_failover(ctx, key, channel, &targets, deadline)
            .await
    }

    pub(super) async fn send_email(
        &self,
        ctx: &Ctx<'_>,
        key: &str,
        deadline: Instant,
    ) -> Result<Sent, StoreError> {
        let channel = NotifyChannel::Email;
        let Some(person) = &ctx.recipient else {
            return self
                .impossible(ctx, key, channel, "recipient not found".into())
                .await;
        };
        let Some(email) = person.email.as_deref().filter(|e| !e.trim().is_empty()) else {
            return self
                .impossible(ctx, key, channel, "recipient has no email address".into())
                .await;
        };
        let Some(facts) = &ctx.facts else {
            return self
                .impossible(
                    ctx,
                    key,
                    channel,
                    "school of the recipient not found".into(),
                )
                .await;
        };
        let composed = if ctx.reason == NotificationReason::SignInCode {
            self.compose_sign_in_code(email, ctx.req, message::message_id(key, &self.from))
        } else if ctx.req.case_id.is_empty() {
            self.compose_notice(
                email,
                ctx.req,
                ctx.reason,
                message::message_id(key, &self.from),
            )
        } else {
            message::staff_email(
                self.policy.locale,
                facts,
                &self.from,
                email,
                ctx.reason,
                message::message_id(key, &self.from),
            )
            .map_err(|e| e.to_string())
        };
        let message = match composed {
            Ok(m) => m,
            Err(e) => return self.impossible(ctx, key, channel, e).await,
        };
        let targets = [Target::Email(&self.mailer, &message)];
        self.send_with_failover(ctx, key, channel, &targets, deadline)
            .await
    }

    /// Each target in turn, with retries of transient failures (exponential
    /// backoff with jitter), until one accepts. Each target gets an equal share
    /// of the time left, so the secondary always gets its turn.
    pub(super) async fn send_with_failover(
        &self,
        ctx: &Ctx<'_>,
        key: &str,
        channel: NotifyChannel,
        targets: &[Target<'_>],
        deadline: Instant,
    ) -> Result<Sent, StoreError> {
        let start = Instant::now();
        let budget = deadline.saturating_duration_since(start);
        let n = u32::try_from(targets.len().max(1)).unwrap_or(1);
        let mut last_error = String::from("no provider configured");
        let mut any_transient = false;
        for (i, target) in targets.iter().enumerate() {
            let share_end = start + budget * (u32::try_from(i).unwrap_or(0) + 1) / n;
            let mut delays = backon::ExponentialBuilder::new()
                .with_min_delay(self.policy.backoff_initial)
                .with_max_delay(self.policy.backoff_max)
                .with_jitter()
                .with_max_times(
                    usize::try_from(self.policy.attempts_per_provider.saturating_sub(1))
                        .unwrap_or(0),
                )
                .build();
            loop {
                let now = Instant::now();
                if now >= deadline {
                    return Ok(Sent::OutOfTime(format!("out of time after: {last_error}")));
                }
                if ctx.level != RiskLevel::Critical
                    && !ctx.last_chance
                    && let Err(wait) = self.limits.provider(target.provider())
                {
                    if wait > INLINE_WAIT {
                        return Ok(Sent::Deferred(wait, "provider rate limit".into()));
                    }
                    tokio::time::sleep(wait).await;
                    continue;
                }
                // The provider account's own limit binds every message.
                if let Some(pacer) = target.pacer()
                    && let Err(wait) = pacer.slot(deadline).await
                {
                    return Ok(Sent::OutOfTime(format!(
                        "{}'s request limit: next turn in {} ms, after the send budget",
                        target.provider(),
                        wait.as_millis()
                    )));
                }
                let t0 = Instant::now();
                let result =
                    tokio::time::timeout(deadline.saturating_duration_since(t0), target.send())
                        .await;
                let latency_ms = millis(t0.elapsed());
                let (transient, error) = match result {
                    Ok(Ok(message_id)) => {
                        return Ok(Sent::Accepted {
                            provider: target.provider(),
                            message_id,
                            latency_ms,
                        });
                    }
                    Ok(Err(e)) => e,
                    Err(_) => (true, "timed out at the end of the send budget".to_owned()),
                };
                tracing::warn!(
                    key = %key,
                    provider = target.provider(),
                    transient,
                    error = %error,
                    "send attempt failed"
                );
                self.record_failure(
                    ctx,
                    key,
                    channel,
                    target.provider(),
                    transient,
                    &error,
                    latency_ms,
                )
                .await?;
                last_error = format!("{}: {error}", target.provider());
                if !transient {
                    break;
                }
                any_transient = true;
                match delays.next() {
                    Some(delay) if Instant::now() + delay < share_end => {
                        tokio::time::sleep(delay).await;
                    }
                    _ => break,
                }
            }
        }
        Ok(Sent::Failed {
            error: last_error,
            transient: any_transient,
        })
    }
}
