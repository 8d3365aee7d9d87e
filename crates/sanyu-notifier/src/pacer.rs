//! A provider account's sending limit, kept by waiting for a turn.
//!
//! SMS and voice providers cap the requests an account may make per second
//! (a QPS in the contract); past it they answer "throttled", and a burst of
//! critical cases would spend its retries on refusals. A [`Pacer`] hands out
//! send slots `1/limit` apart plus 5 % (requests leave evenly spaced but
//! reach the provider with the network's jitter, and a provider counts what
//! arrives), first come first served (tokio's mutex is fair), to every
//! message on that provider — critical ones too: waiting for
//! a slot the provider will accept is faster than being refused and backing
//! off. A message whose slot would come after its send deadline does not take
//! one and is redelivered. The limit is per notifier process: with several
//! replicas, give each its share of the account's limit.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

pub struct Pacer {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Pacer {
    /// `None` for 0 (no limit).
    pub fn per_second(limit: u32) -> Option<Self> {
        (limit > 0).then(|| Self {
            interval: Duration::from_secs(1) * 21 / 20 / limit,
            next: Mutex::new(Instant::now()),
        })
    }

    /// Waits for the next free slot and takes it; `Err(wait)` without
    /// taking one when the slot would come after `deadline`.
    pub async fn slot(&self, deadline: std::time::Instant) -> Result<(), Duration> {
        let slot = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let slot = (*next).max(now);
            let wait = slot - now;
            if std::time::Instant::now() + wait > deadline {
                return Err(wait);
            }
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn slots_are_a_fixed_interval_apart_and_none_is_taken_past_the_deadline() {
        // 10/s with 5 % headroom: a slot every 105 ms.
        let pacer = Pacer::per_second(10).unwrap();
        let start = Instant::now();
        let far = std::time::Instant::now() + Duration::from_secs(3600);
        for _ in 0..5 {
            pacer.slot(far).await.unwrap();
        }
        // Five slots: at 0, 105, 210, 315 and 420 ms.
        assert_eq!(start.elapsed(), Duration::from_millis(420));
        let soon = std::time::Instant::now() + Duration::from_millis(50);
        assert_eq!(pacer.slot(soon).await, Err(Duration::from_millis(105)));
        // The refused message took no slot: the next one gets the same turn.
        pacer.slot(far).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(525));
        assert!(Pacer::per_second(0).is_none());
    }
}
