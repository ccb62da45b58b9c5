//! The account (`GET /v1/account`) and its webhook endpoints (`/v1/webhook_endpoints`: create,
//! list, retrieve, delete; at most 16), as the program's API-key connection uses them.

use super::{Answer, Recorded, State};

#[derive(Default)]
pub(super) struct Endpoints {}

pub(super) fn answer(_state: &mut State, _req: &Recorded) -> Option<Answer> {
    None
}
