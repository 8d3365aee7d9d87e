//! When and how a person is reached: channels per level, quiet hours, rate
//! limits, and the clock they read. Pure decisions; the deliverer acts on them.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use governor::clock::Clock as GovernorClock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::HashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use sanyu_domain::RiskLevel;
use sanyu_platform::config::{NotifyChannel, NotifyConfig};
use uuid::Uuid;

/// The notifier's notion of now. Tests inject a [`ManualClock`].
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(Mutex::new(at))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = at;
    }

    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A shared clock, also usable as the rate limiters' clock.
#[derive(Clone)]
pub struct SharedClock(pub Arc<dyn Clock>);

impl SharedClock {
    pub fn now(&self) -> DateTime<Utc> {
        self.0.now()
    }
}

impl GovernorClock for SharedClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        let nanos = self.0.now().timestamp_nanos_opt().unwrap_or(0).max(0);
        Nanos::from(u64::try_from(nanos).unwrap_or(0))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("notify.time_zone `{0}` is not an IANA time zone")]
    TimeZone(String),
    #[error("notify.quiet_hours.{0} must be HH:MM")]
    Time(&'static str),
    #[error("notify.channels.{0} is empty: a level must have at least one channel")]
    NoChannel(&'static str),
}

/// Quiet hours in a time zone: `[start, end)` local time, possibly across midnight.
#[derive(Debug, Clone)]
pub struct QuietHours {
    pub tz: Tz,
    pub start: NaiveTime,
    pub end: NaiveTime,
    pub channels: Vec<NotifyChannel>,
}

impl QuietHours {
    /// When quiet hours end, if `now` falls in them.
    pub fn until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.start == self.end {
            return None;
        }
        let local = now.with_timezone(&self.tz);
        let time = local.time();
        let inside = if self.start < self.end {
            time >= self.start && time < self.end
        } else {
            time >= self.start || time < self.end
        };
        if !inside {
            return None;
        }
        let mut day = local.date_naive();
        if time >= self.end {
            day = day.succ_opt()?;
        }
        // A local time skipped by a DST change resolves to the earliest
        // valid instant after it.
        let naive = day.and_time(self.end);
        let end = self.tz.from_local_datetime(&naive).earliest().or_else(|| {
            self.tz
                .from_local_datetime(&(naive + chrono::Duration::hours(1)))
                .earliest()
        })?;
        Some(end.with_timezone(&Utc))
    }
}

/// The notifier's policy, validated from configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    pub critical: Vec<NotifyChannel>,
    pub high: Vec<NotifyChannel>,
    pub elevated: Vec<NotifyChannel>,
    pub quiet_hours: Option<QuietHours>,
    pub tz: Tz,
    pub locale: sanyu_sms::Locale,
    pub attempts_per_provider: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub recipient_per_hour: u32,
    pub provider_per_second: u32,
    pub lease: chrono::Duration,
    /// How long non-critical notices to one person gather into a digest
    /// (zero: no digests).
    pub digest_window: chrono::Duration,
}

fn hh_mm(field: &'static str, value: &str) -> Result<NaiveTime, PolicyError> {
    NaiveTime::parse_from_str(value.trim(), "%H:%M").map_err(|_| PolicyError::Time(field))
}

impl Policy {
    pub fn from_config(c: &NotifyConfig) -> Result<Self, PolicyError> {
        let tz: Tz = c
            .time_zone
            .parse()
            .map_err(|_| PolicyError::TimeZone(c.time_zone.clone()))?;
        for (name, list) in [
            ("critical", &c.channels.critical),
            ("high", &c.channels.high),
            ("elevated", &c.channels.elevated),
        ] {
            if list.is_empty() {
                return Err(PolicyError::NoChannel(name));
            }
        }
        let quiet_hours = if c.quiet_hours.enabled {
            Some(QuietHours {
                tz,
                start: hh_mm("start", &c.quiet_hours.start)?,
                end: hh_mm("end", &c.quiet_hours.end)?,
                channels: c.quiet_hours.channels.clone(),
            })
        } else {
            None
        };
        Ok(Self {
            critical: c.channels.critical.clone(),
            high: c.channels.high.clone(),
            elevated: c.channels.elevated.clone(),
            quiet_hours,
            tz,
            locale: c.locale,
            attempts_per_provider: c.attempts_per_provider.max(1),
            backoff_initial: Duration::from_millis(c.backoff_initial_ms),
            backoff_max: Duration::from_millis(c.backoff_max_ms.max(c.backoff_initial_ms)),
            recipient_per_hour: c.recipient_per_hour,
            provider_per_second: c.provider_per_second,
            lease: chrono::Duration::seconds(i64::try_from(c.lease_secs.max(2)).unwrap_or(60)),
            digest_window: chrono::Duration::seconds(
                i64::try_from(c.digest_window_secs.min(86_400)).unwrap_or(600),
            ),
        })
    }

    /// The channels a level uses first, in order.
    pub fn channels(&self, level: RiskLevel) -> &[NotifyChannel] {
        match level {
            RiskLevel::Critical => &self.critical,
            RiskLevel::High => &self.high,
            RiskLevel::Elevated | RiskLevel::Watch => &self.elevated,
        }
    }

    /// The channels of `level` for a person who added `added` (their
    /// preferences, `sanyu_store::preferences`): the level's, then the
    /// person's additions in their order. Never fewer than the level's.
    pub fn channels_with(&self, level: RiskLevel, added: &[NotifyChannel]) -> Vec<NotifyChannel> {
        let mut out = self.channels(level).to_vec();
        for c in added {
            if !out.contains(c) {
                out.push(*c);
            }
        }
        out
    }

    /// The name preferences are stored under for `level`.
    pub fn level_name(level: RiskLevel) -> &'static str {
        match level {
            RiskLevel::Critical => "critical",
            RiskLevel::High => "high",
            RiskLevel::Elevated | RiskLevel::Watch => "elevated",
        }
    }

    /// If a non-critical message on `channel` must wait for the end of quiet hours, until when.
    pub fn quiet_until(
        &self,
        level: RiskLevel,
        channel: NotifyChannel,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if level == RiskLevel::Critical {
            return None;
        }
        let quiet = self.quiet_hours.as_ref()?;
        if !quiet.channels.contains(&channel) {
            return None;
        }
        quiet.until(now)
    }
}

type Keyed = RateLimiter<
    (Uuid, NotifyChannel),
    HashMapStateStore<(Uuid, NotifyChannel)>,
    SharedClock,
    NoOpMiddleware<Nanos>,
>;
type Direct = RateLimiter<NotKeyed, InMemoryState, SharedClock, NoOpMiddleware<Nanos>>;

/// Rate limits for non-critical messages (GCRA, `governor`), per process:
/// with several notifier replicas each enforces its own share. They protect
/// people and providers from floods; they are not quotas. A critical message
/// never asks them.
pub struct Limits {
    clock: SharedClock,
    recipient: Option<Keyed>,
    providers: Vec<(&'static str, Direct)>,
    provider_quota: Option<Quota>,
}

impl Limits {
    pub fn new(policy: &Policy, clock: SharedClock, providers: &[&'static str]) -> Self {
        let recipient = NonZeroU32::new(policy.recipient_per_hour).map(|n| {
            RateLimiter::new(
                Quota::per_hour(n),
                HashMapStateStore::default(),
                clock.clone(),
            )
        });
        let provider_quota = NonZeroU32::new(policy.provider_per_second).map(Quota::per_second);
        let providers = provider_quota
            .map(|q| {
                providers
                    .iter()
                    .map(|name| {
                        (
                            *name,
                            RateLimiter::new(q, InMemoryState::default(), clock.clone()),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            clock,
            recipient,
            providers,
            provider_quota,
        }
    }

    /// Take one message for `recipient` on `channel`, or say how long to wait.
    pub fn recipient(&self, recipient: Uuid, channel: NotifyChannel) -> Result<(), Duration> {
        let Some(limiter) = &self.recipient else {
            return Ok(());
        };
        limiter
            .check_key(&(recipient, channel))
            .map_err(|not_until| not_until.wait_time_from(GovernorClock::now(&self.clock)))
    }

    /// Take one send on `provider`, or say how long to wait.
    pub fn provider(&self, provider: &str) -> Result<(), Duration> {
        if self.provider_quota.is_none() {
            return Ok(());
        }
        match self.providers.iter().find(|(name, _)| *name == provider) {
            Some((_, limiter)) => limiter
                .check()
                .map_err(|not_until| not_until.wait_time_from(GovernorClock::now(&self.clock))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn shanghai(hour: u32, minute: u32) -> DateTime<Utc> {
        chrono_tz::Asia::Shanghai
            .with_ymd_and_hms(2026, 11, 30, hour, minute, 0)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn policy(config: NotifyConfig) -> Policy {
        Policy::from_config(&config).unwrap()
    }

    #[test]
    fn default_channels_follow_the_design() {
        let p = policy(NotifyConfig::default());
        use NotifyChannel::*;
        assert_eq!(p.channels(RiskLevel::Critical), [Sms, Voice, Im, Email]);
        assert_eq!(p.channels(RiskLevel::High), [Sms, Im, Email]);
        assert_eq!(p.channels(RiskLevel::Elevated), [Email, Im]);
    }

    #[test]
    fn quiet_hours_across_midnight_end_at_seven_local_time() {
        let p = policy(NotifyConfig::default());
        let sms = NotifyChannel::Sms;
        // 23:10 and 02:00 are quiet; both wait for 07:00 (of the next / same day).
        let next_morning = chrono_tz::Asia::Shanghai
            .with_ymd_and_hms(2026, 12, 1, 7, 0, 0)
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            p.quiet_until(RiskLevel::High, sms, shanghai(23, 10)),
            Some(next_morning)
        );
        assert_eq!(
            p.quiet_until(RiskLevel::Elevated, sms, shanghai(2, 0)),
            Some(shanghai(7, 0))
        );
        // Daytime, the boundaries, email and critical messages never wait.
        assert_eq!(p.quiet_until(RiskLevel::High, sms, shanghai(12, 0)), None);
        assert_eq!(p.quiet_until(RiskLevel::High, sms, shanghai(7, 0)), None);
        assert!(
            p.quiet_until(RiskLevel::High, sms, shanghai(22, 0))
                .is_some()
        );
        assert_eq!(
            p.quiet_until(RiskLevel::High, NotifyChannel::Email, shanghai(23, 10)),
            None
        );
        assert_eq!(
            p.quiet_until(RiskLevel::Critical, sms, shanghai(23, 10)),
            None
        );
    }

    #[test]
    fn quiet_hours_within_one_day_and_disabled() {
        let mut c = NotifyConfig::default();
        c.quiet_hours.start = "12:00".into();
        c.quiet_hours.end = "14:00".into();
        let p = policy(c.clone());
        assert_eq!(
            p.quiet_until(RiskLevel::High, NotifyChannel::Sms, shanghai(13, 0)),
            Some(shanghai(14, 0))
        );
        assert_eq!(
            p.quiet_until(RiskLevel::High, NotifyChannel::Sms, shanghai(23, 0)),
            None
        );
        c.quiet_hours.enabled = false;
        assert_eq!(
            policy(c).quiet_until(RiskLevel::High, NotifyChannel::Sms, shanghai(13, 0)),
            None
        );
    }

    #[test]
    fn a_bad_time_zone_or_time_is_a_configuration_error() {
        let c = NotifyConfig {
            time_zone: "Mars/Olympus".into(),
            ..Default::default()
        };
        assert!(matches!(
            Policy::from_config(&c),
            Err(PolicyError::TimeZone(_))
        ));
        let mut c = NotifyConfig::default();
        c.quiet_hours.end = "7am".into();
        assert!(matches!(
            Policy::from_config(&c),
            Err(PolicyError::Time("end"))
        ));
    }

    #[test]
    fn the_recipient_limit_waits_until_the_window_allows_and_the_clock_decides() {
        let c = NotifyConfig {
            recipient_per_hour: 2,
            ..Default::default()
        };
        let p = policy(c);
        let clock = Arc::new(ManualClock::new(shanghai(10, 0)));
        let limits = Limits::new(&p, SharedClock(clock.clone()), &["webhook"]);
        let who = Uuid::now_v7();
        assert_eq!(limits.recipient(who, NotifyChannel::Sms), Ok(()));
        assert_eq!(limits.recipient(who, NotifyChannel::Sms), Ok(()));
        let wait = limits.recipient(who, NotifyChannel::Sms).unwrap_err();
        assert_eq!(wait, Duration::from_secs(30 * 60));
        // Other people and other channels are not affected.
        assert_eq!(limits.recipient(Uuid::now_v7(), NotifyChannel::Sms), Ok(()));
        assert_eq!(limits.recipient(who, NotifyChannel::Email), Ok(()));
        clock.advance(chrono::Duration::minutes(30));
        assert_eq!(limits.recipient(who, NotifyChannel::Sms), Ok(()));
    }

    #[test]
    fn the_provider_limit_is_per_provider() {
        let c = NotifyConfig {
            provider_per_second: 1,
            ..Default::default()
        };
        let p = policy(c);
        let clock = Arc::new(ManualClock::new(shanghai(10, 0)));
        let limits = Limits::new(&p, SharedClock(clock.clone()), &["webhook", "aliyun"]);
        assert_eq!(limits.provider("webhook"), Ok(()));
        assert!(limits.provider("webhook").is_err());
        assert_eq!(limits.provider("aliyun"), Ok(()));
        clock.advance(chrono::Duration::seconds(1));
        assert_eq!(limits.provider("webhook"), Ok(()));
    }
}
