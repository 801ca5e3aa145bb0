//! Every query the server makes, one module per resource. Functions here take a
//! connection (or, for the batched ones, the pool) and know nothing of HTTP or of the
//! application state; each batcher is built beside the function it serves.

pub mod blobs;
pub mod functions;
pub mod group_pushes;
pub mod groups;
pub mod inbox;
pub mod message_view;
pub mod messages;
pub mod read_marks;
pub mod servers;
pub mod sessions;
pub mod users;
