//! What the decision tests of several modules share: a configuration from `.env`-style pairs,
//! and the linked account.

use crate::config::{Inputs, WhatsAppConfig, resolve};
use crate::identity::{Account, Lid, PhoneNumber};

/// The WhatsApp configuration for these environment pairs, in bot mode unless they say
/// otherwise (self-chat admits only the owner). Panics on a configuration error.
pub(crate) fn config(env: &[(&str, &str)]) -> WhatsAppConfig {
    let mut inputs = Inputs::default();
    inputs.env.insert("WHATSAPP_MODE".into(), "bot".into());
    for (k, v) in env {
        inputs.env.insert((*k).into(), (*v).into());
    }
    let r = resolve(&inputs);
    assert!(!r.has_errors(), "{:?}", r.diagnostics);
    r.config.whatsapp
}

/// The linked account of the tests: +15550000000, LID 11111111111111.
pub(crate) fn own() -> Account {
    Account {
        phone: Some(PhoneNumber::from_digits("15550000000").expect("valid")),
        lid: Some(Lid::from_digits("11111111111111").expect("valid")),
    }
}
