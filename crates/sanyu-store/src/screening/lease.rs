//! Which process runs a job: a lease with an owner and an expiry, taken,
//! renewed with each batch and given back at shutdown.

use super::*;

/// Unfinished jobs nobody holds a live lease on (never claimed, released, or
/// whose process died): another process may take them up.
pub async fn unleased(
    conn: &impl ConnectionTrait,
    now: DateTime<Utc>,
) -> Result<Vec<screening_import::Model>> {
    use screening_import::Column as C;
    Ok(screening_import::Entity::find()
        .filter(C::State.is_in([state::QUEUED, state::RUNNING]))
        .filter(
            Condition::any()
                .add(C::LeaseUntil.is_null())
                .add(C::LeaseUntil.lt(now)),
        )
        .order_by_asc(C::CreatedAt)
        .all(conn)
        .await?)
}

/// Who may run a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// This process holds the lease: run it.
    Held,
    /// Another process holds a live lease until then.
    Busy {
        owner: String,
        until: Option<DateTime<Utc>>,
    },
    /// The job is no longer queued or running.
    Ended,
}

/// Take the lease on a job for `owner` (when free, expired, or already
/// `owner`'s) and mark it running. Only the holder of the lease writes the
/// job's batches ([`renew_lease`] in each batch's transaction), so two
/// processes never run one job at once.
pub async fn claim(
    conn: &impl ConnectionTrait,
    id: Uuid,
    owner: &str,
    ttl: chrono::Duration,
) -> Result<Lease> {
    use screening_import::Column as C;
    let now = Utc::now();
    let claimed = screening_import::Entity::update_many()
        .col_expr(C::State, Expr::value(state::RUNNING))
        .col_expr(C::LeaseOwner, Expr::value(Some(owner.to_owned())))
        .col_expr(C::LeaseUntil, Expr::value(Some(now + ttl)))
        .col_expr(C::UpdatedAt, Expr::value(now))
        .col_expr(C::StartedAt, Expr::value(Some(now)))
        .filter(C::Id.eq(id))
        .filter(C::State.is_in([state::QUEUED, state::RUNNING]))
        .filter(
            Condition::any()
                .add(C::LeaseOwner.is_null())
                .add(C::LeaseOwner.eq(owner))
                .add(C::LeaseUntil.is_null())
                .add(C::LeaseUntil.lt(now)),
        )
        .exec(conn)
        .await?;
    if claimed.rows_affected == 1 {
        return Ok(Lease::Held);
    }
    let job = get(conn, id).await?;
    Ok(match job {
        Some(j) if matches!(j.state.as_str(), state::QUEUED | state::RUNNING) => Lease::Busy {
            owner: j.lease_owner.unwrap_or_default(),
            until: j.lease_until,
        },
        _ => Lease::Ended,
    })
}

/// Extend `owner`'s lease; `false` when it is no longer `owner`'s (it expired
/// and another process took the job): the caller must roll back and stop.
pub async fn renew_lease(
    conn: &impl ConnectionTrait,
    id: Uuid,
    owner: &str,
    ttl: chrono::Duration,
) -> Result<bool> {
    use screening_import::Column as C;
    let now = Utc::now();
    let renewed = screening_import::Entity::update_many()
        .col_expr(C::LeaseUntil, Expr::value(Some(now + ttl)))
        .filter(C::Id.eq(id))
        .filter(C::LeaseOwner.eq(owner))
        .exec(conn)
        .await?;
    Ok(renewed.rows_affected == 1)
}

/// Give the lease back (a job paused at shutdown), so another process may
/// take the job up at once.
pub async fn release_lease(conn: &impl ConnectionTrait, id: Uuid, owner: &str) -> Result<()> {
    use screening_import::Column as C;
    screening_import::Entity::update_many()
        .col_expr(C::LeaseOwner, Expr::value(Option::<String>::None))
        .col_expr(C::LeaseUntil, Expr::value(Option::<DateTime<Utc>>::None))
        .filter(C::Id.eq(id))
        .filter(C::LeaseOwner.eq(owner))
        .exec(conn)
        .await?;
    Ok(())
}
