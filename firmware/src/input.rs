//! Digital contacts read through `embedded_hal::digital::InputPin`, with their wiring
//! polarity, so node logic sees "door closed" rather than "pin low".
use embedded_hal::digital::InputPin;

/// How the contact is wired: which electrical level means "active".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polarity {
    ActiveHigh,
    /// Typical for a dry contact to ground with a pull-up.
    ActiveLow,
}

/// One digital input with its polarity. A read error keeps the previous value and is
/// counted: a flaky GPIO expander must not invent door or alarm events.
#[derive(Debug)]
pub struct Contact<P> {
    pin: P,
    polarity: Polarity,
    last: bool,
    errors: u32,
}

impl<P: InputPin> Contact<P> {
    pub const fn new(pin: P, polarity: Polarity) -> Self {
        Self {
            pin,
            polarity,
            last: false,
            errors: 0,
        }
    }

    pub const fn active_high(pin: P) -> Self {
        Self::new(pin, Polarity::ActiveHigh)
    }

    pub const fn active_low(pin: P) -> Self {
        Self::new(pin, Polarity::ActiveLow)
    }

    /// Whether the contact is active now (raw, not debounced).
    pub fn is_active(&mut self) -> bool {
        match self.pin.is_high() {
            Ok(high) => self.last = high == (self.polarity == Polarity::ActiveHigh),
            Err(_) => self.errors = self.errors.saturating_add(1),
        }
        self.last
    }

    /// Read errors since start.
    pub const fn errors(&self) -> u32 {
        self.errors
    }

    /// Gives the pin back (tests call `done()` on mocks).
    pub fn release(self) -> P {
        self.pin
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::MockError;
    use embedded_hal_mock::eh1::digital::{Mock, State, Transaction};

    #[test]
    fn polarity_and_read_errors() {
        let pin = Mock::new(&[
            Transaction::get(State::Low),
            Transaction::get(State::High).with_error(MockError::Io(std::io::ErrorKind::Other)),
            Transaction::get(State::High),
        ]);
        let mut door_closed = Contact::active_low(pin);
        assert!(door_closed.is_active());
        assert!(door_closed.is_active(), "a failed read keeps the last value");
        assert!(!door_closed.is_active());
        assert_eq!(door_closed.errors(), 1);
        door_closed.release().done();
    }
}
