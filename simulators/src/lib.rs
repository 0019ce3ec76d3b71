//! Hardware simulators: physics models of lifts and sterilizers, simulated
//! nodes that deliver their readings like real ones, and a fleet runner.
pub mod clock;
pub mod fleet;
pub mod lift;
pub mod node;
pub mod sterilizer;
