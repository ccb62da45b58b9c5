//! Connect OAuth: the consent page (`GET /oauth/authorize`), the code exchange
//! (`POST /oauth/token`) and `POST /oauth/deauthorize`.

use super::{Answer, Recorded, State};

#[derive(Default)]
pub(super) struct OAuth {}

pub(super) fn answer(_state: &mut State, _req: &Recorded) -> Option<Answer> {
    None
}
