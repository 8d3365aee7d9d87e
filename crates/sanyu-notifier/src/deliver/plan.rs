//! Which channels one request goes on: the level's (`notify.channels`) and
//! the person's additions, those the deployment has and the person has an
//! address for, a call only for an alarm; fixed channels for sign-in codes
//! and answers to SMS replies; email for notices about no case; and this
//! deliverer's share of them ([`Share`]). Empty: nothing to do here.

use super::*;

/// Whether `person` has an address for `channel`: an email address, or a
/// mobile number for SMS, a call and work IM.
fn has_address(person: &staff::Model, channel: NotifyChannel) -> bool {
    let filled = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.trim().is_empty());
    match channel {
        NotifyChannel::Email => filled(&person.email),
        NotifyChannel::Sms | NotifyChannel::Voice | NotifyChannel::Im => filled(&person.phone),
    }
}

impl Deliverer {
    /// The channels of `ctx`'s request this deliverer sends.
    pub(super) async fn plan(&self, ctx: &Ctx<'_>) -> Result<Vec<NotifyChannel>, StoreError> {
        let (req, reason, level, staff_id) = (ctx.req, ctx.reason, ctx.level, ctx.staff_id);
        // The person's added channels (never fewer than the level's).
        let added: Vec<NotifyChannel> = if reason.is_about_a_case() && !req.case_id.is_empty() {
            sanyu_store::preferences::of(&self.db, staff_id)
                .await?
                .remove(Policy::level_name(level))
                .unwrap_or_default()
                .iter()
                .filter_map(|c| NotifyChannel::parse(c))
                .collect()
        } else {
            Vec::new()
        };
        let planned: Vec<NotifyChannel> = self
            .policy
            .channels_with(level, &added)
            .into_iter()
            .filter(|c| self.enabled(*c))
            // A call wakes a person: only for a notice that asks them to act now.
            .filter(|c| *c != NotifyChannel::Voice || reason.is_alarm())
            .collect();
        // A sign-in code goes by the channel the console chose (SMS only
        // while a provider is configured). Other case-less notices go by
        // email only (their text names a period or a call reference, which
        // SMS templates approved for cases do not carry).
        let planned = if matches!(
            reason,
            NotificationReason::AckConfirmed | NotificationReason::AckRefused
        ) {
            // The answer to an SMS reply goes back by SMS only.
            if self.sms_enabled() {
                vec![NotifyChannel::Sms]
            } else {
                return Ok(Vec::new());
            }
        } else if reason == NotificationReason::SignInCode {
            if req.channel == v1::Channel::Sms as i32 && self.sms_enabled() {
                vec![NotifyChannel::Sms]
            } else {
                vec![NotifyChannel::Email]
            }
        } else if planned.is_empty() || req.case_id.is_empty() {
            vec![NotifyChannel::Email]
        } else {
            // The channels the person has an address for (an SMS-only
            // colleague gets SMS, a call, IM, and no failed email); with
            // none, every channel is tried and fails on record (the ladder
            // auditor raises the alarm).
            let addressed: Vec<NotifyChannel> = planned
                .iter()
                .copied()
                .filter(|c| ctx.recipient.as_ref().is_some_and(|p| has_address(p, *c)))
                .collect();
            if addressed.is_empty() {
                planned
            } else {
                addressed
            }
        };
        // This deliverer's share of them (see [`Share`]).
        Ok(planned
            .into_iter()
            .filter(|c| (*c == NotifyChannel::Voice) == (self.share == Share::Calls))
            .collect())
    }
}
