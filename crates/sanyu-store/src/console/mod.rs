//! The console's sign-in and sessions.
//!
//! - A one-time code is asked for with a staff number, email or phone. A
//!   challenge row is written whether or not anybody matched (then without a
//!   staff member, so no code can ever succeed): the answer, the attempts and
//!   the lock look the same either way. The code is stored as a keyed hash
//!   (HMAC with a key derived from the data key, bound to the challenge), the
//!   browser's challenge secret as a SHA-256 hash; what was typed is kept
//!   only as a keyed hash, for the rate limits.
//! - A code is single use, expires, and allows [`MAX_ATTEMPTS`] tries.
//! - The code goes by email, or by SMS when the deployment has an SMS
//!   provider, the person has a phone and chose SMS (or has no email):
//!   [`pick_channel`]. An emailed code comes with a one-time sign-in link:
//!   a random token stored as a keyed hash on the same challenge, so it
//!   expires with the code and is used up with it ([`use_link`]); looking
//!   at it ([`peek_link`]) changes nothing.
//! - Sessions are rows; the cookie's token is stored as a SHA-256 hash. A
//!   session holds only while its staff member is active in the role it was

mod channel;
mod code;
mod key;
mod link;
mod session;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::{Result, StoreError};

pub use channel::{CodeChannel, pick_channel};
pub use code::{
    CodeAsk, CodeCheck, CodeLimits, CodeRequest, CodeSend, check_code, find_staff, request_code,
};
pub use key::ConsoleKey;
pub use link::{LinkCheck, peek_link, use_link};
pub use session::{
    OpenedSession, SessionCheck, check_session, end_reason, end_session, end_sessions_of_staff,
    open_session,
};

/// Tries a code allows.
pub const MAX_ATTEMPTS: i32 = 5;
/// How long a code holds.
pub const CODE_TTL_MINUTES: i64 = 10;
/// Digits of a code.
pub const CODE_DIGITS: usize = 6;

/// A code sealed for its notification request (base64url of the sealed
/// bytes): only the notifier, holding the data key, opens it to send it.
pub fn seal_code(sealer: &crate::crypto::Sealer, code: &str) -> Result<String> {
    Ok(URL_SAFE_NO_PAD.encode(sealer.seal(code)?))
}

/// Open a code sealed by [`seal_code`].
pub fn open_code(sealer: &crate::crypto::Sealer, sealed: &str) -> Result<String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(sealed.trim())
        .map_err(|_| StoreError::Unseal)?;
    sealer.open(&bytes)
}
