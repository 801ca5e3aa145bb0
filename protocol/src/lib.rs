//! What FastChat's programs agree on: the JSON shapes of the public API ([`wire`]), its
//! error codes ([`problem`]), the naming rules ([`names`]), and the client-side
//! cryptography ([`keys`]) that keeps the server blind to passwords and private keys.
//! Documented for other clients in `docs/crypto.md`.

pub mod envelope;
pub mod group;
pub mod image;
pub mod keys;
pub mod names;
pub mod problem;
pub mod safety;
pub mod whole;
pub mod wire;
