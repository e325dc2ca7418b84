//! Telemetry state and messages (filled in with the COSE profiles).

use crate::Error;
use tfmprov_psa::Psa;

/// Counters kept across reboots.
pub struct State {}

impl State {
    /// Loads the counters.
    pub fn load(_psa: &mut Psa) -> Result<State, Error> {
        Ok(State {})
    }
}
