//! A provider account's sending limit, kept by taking turns.
//!
//! SMS and voice providers cap the requests an account may make per second
//! (a QPS in the contract); past it they answer "throttled", and a burst of
//! critical cases would spend its retries on refusals. A [`Pacer`] hands out
//! send turns `1/limit` apart plus 5 % (requests leave evenly spaced but
//! reach the provider with the network's jitter, and a provider counts what
//! arrives), first come first served (tokio's mutex is fair), to every
//! message on that provider — critical ones too: a turn the provider will
//! accept comes sooner than a refusal and its backoff.
//!
//! A turn close at hand is waited for; a later one is **reserved** for the
//! delivery key and the message comes back for it (the notifier defers the
//! channel and the request is redelivered when the turn is due), so that the
//! request's other channels, and the requests behind it, are not held up by
//! this provider's queue. A reservation nobody comes back for (the request
//! went to another replica, the process restarted) lapses a minute after its
//! time. The limit is per notifier process: with several replicas, give each
//! its share of the account's limit.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// How long past its time a reserved turn is kept for its message.
const RESERVATION_LAPSES: Duration = Duration::from_secs(60);

pub struct Pacer {
    interval: Duration,
    state: Mutex<State>,
}

struct State {
    next: Instant,
    reserved: HashMap<String, Instant>,
}

/// When a message may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Now (after a wait of at most the inline limit).
    Now,
    /// Its turn is reserved this far ahead: come back then.
    Later(Duration),
}

impl Pacer {
    /// `None` for 0 (no limit).
    pub fn per_second(limit: u32) -> Option<Self> {
        (limit > 0).then(|| Self {
            interval: Duration::from_secs(1) * 21 / 20 / limit,
            state: Mutex::new(State {
                next: Instant::now(),
                reserved: HashMap::new(),
            }),
        })
    }

    /// The turn of the message `key`: its reserved one if it has one, else
    /// the next free one. Waited for when it is at most `inline` away (then
    /// [`Turn::Now`]); otherwise kept for `key` ([`Turn::Later`]).
    pub async fn turn(&self, key: &str, inline: Duration) -> Turn {
        let now = Instant::now();
        let slot = {
            let mut state = self.state.lock().await;
            state
                .reserved
                .retain(|_, at| *at + RESERVATION_LAPSES > now);
            match state.reserved.remove(key) {
                Some(slot) => slot,
                None => {
                    let slot = state.next.max(now);
                    state.next = slot + self.interval;
                    slot
                }
            }
        };
        let wait = slot.saturating_duration_since(now);
        if wait <= inline {
            tokio::time::sleep_until(slot).await;
            return Turn::Now;
        }
        self.state
            .lock()
            .await
            .reserved
            .insert(key.to_owned(), slot);
        Turn::Later(wait)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn turns_are_a_fixed_interval_apart_and_a_far_one_is_kept_for_its_message() {
        // 10/s with 5 % headroom: a turn every 105 ms.
        let pacer = Pacer::per_second(10).unwrap();
        let start = Instant::now();
        let inline = Duration::from_millis(300);
        for k in 0..4 {
            assert_eq!(pacer.turn(&format!("m{k}"), inline).await, Turn::Now);
        }
        // Four turns: at 0, 105, 210 and 315 ms.
        assert_eq!(start.elapsed(), Duration::from_millis(315));
        // Two more asked for at once: 420 ms is close, 525 ms is not.
        let (a, b) = tokio::join!(
            pacer.turn("m4", Duration::from_millis(105)),
            pacer.turn("m5", Duration::from_millis(105))
        );
        assert_eq!(a, Turn::Now);
        assert_eq!(b, Turn::Later(Duration::from_millis(210)));
        // A newcomer goes after the reserved turn…
        assert_eq!(
            pacer.turn("m6", Duration::ZERO).await,
            Turn::Later(Duration::from_millis(210))
        );
        // …and m5, back at its time, takes the turn kept for it.
        tokio::time::advance(Duration::from_millis(105)).await;
        assert_eq!(pacer.turn("m5", Duration::ZERO).await, Turn::Now);
        assert_eq!(start.elapsed(), Duration::from_millis(525));
        assert!(Pacer::per_second(0).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_reservation_nobody_comes_back_for_lapses() {
        let pacer = Pacer::per_second(1).unwrap();
        assert_eq!(pacer.turn("a", Duration::ZERO).await, Turn::Now);
        assert!(matches!(
            pacer.turn("b", Duration::ZERO).await,
            Turn::Later(_)
        ));
        tokio::time::advance(Duration::from_secs(120)).await;
        assert_eq!(pacer.turn("c", Duration::ZERO).await, Turn::Now);
        assert_eq!(pacer.state.lock().await.reserved.len(), 0);
    }
}
