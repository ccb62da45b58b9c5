//! `GET /v1/events`: the account's events, filtered by `created` and `types[]`, paginated, for
//! the catch-up after downtime.

use super::{Answer, Recorded, State};

#[derive(Default)]
pub(super) struct Events {}

pub(super) fn answer(_state: &mut State, _req: &Recorded) -> Option<Answer> {
    None
}
