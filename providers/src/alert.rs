//! Alert sinks, one module per `alerts: [{ kind }]`. They only deliver: when an alert is due,
//! and what it says, is the reconciler's business.

pub(crate) mod email;
mod mail_text;
pub(crate) mod webhook;

use rota_api::wire::rfc3339;
