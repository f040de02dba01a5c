//! What every domain error can say about itself, so the HTTP layer maps them
//! in one place.

/// The broad class of a refusal; the edge maps each class to one status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The command's input is malformed (bad phone number, zero amount): 400.
    Invalid,
    /// The aggregate the command addresses does not exist: 404.
    NotFound,
    /// The aggregate is in a state that does not allow the command: 409.
    Conflict,
    /// A business rule refuses an otherwise valid command (insufficient points): 422.
    Rule,
}

/// A typed refusal with a stable, machine-readable code.
///
/// Codes are part of the public API (`member.insufficient_points`); renaming
/// one is a breaking change for clients.
pub trait DomainError: std::error::Error {
    /// Stable code, `<aggregate>.<rule>`.
    fn code(&self) -> &'static str;
    /// The class of the refusal.
    fn kind(&self) -> ErrorKind;
    /// The input field at fault, for validation errors.
    fn field(&self) -> Option<&'static str> {
        None
    }
}
