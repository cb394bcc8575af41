//! The WhatsApp edge of hermes.
//!
//! Today: the session directory (inspection for `doctor`). The link over `whatsapp-rust`, its
//! supervisor and the inbound durability hook land here next; this is the only crate that will
//! know `whatsapp-rust` types.

pub mod session_dir;
