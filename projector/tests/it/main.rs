//! The `mileage-projector` binary's settings, checked before it starts.
//! Tests that run it with other services are in `e2e/`.

mod settings;
