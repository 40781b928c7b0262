//! `rota version`: what this build is — its version, the wire protocol it speaks, its cargo
//! features, and which backend `kind`s its config accepts (the rest parse and are refused).

use std::fmt::Write as _;

use rota_api::config::{
    AlertSpec, AuditConfig, Availability, CaSpec, DcvSpec, InstallSpec, Tagged,
};
use rota_api::wire::PROTOCOL_VERSION;
use serde::Serialize;

/// What `rota version -o json|yaml` prints.
#[derive(Debug, Serialize)]
pub(crate) struct BuildInfo {
    version: &'static str,
    protocol_version: u32,
    /// The optional cargo features and whether this build has them.
    features: Vec<Feature>,
    /// Per config surface (`ca`, `dcv`, ...), the kinds that run in this build.
    available_kinds: Vec<Surface>,
}

#[derive(Debug, Serialize)]
struct Feature {
    name: &'static str,
    enabled: bool,
}

#[derive(Debug, Serialize)]
struct Surface {
    surface: &'static str,
    kinds: Vec<&'static str>,
}

/// This build's facts.
pub(crate) fn build_info() -> BuildInfo {
    BuildInfo {
        version: env!("CARGO_PKG_VERSION"),
        protocol_version: PROTOCOL_VERSION,
        features: vec![Feature {
            name: "k8s",
            enabled: Availability::K8S == Availability::Available,
        }],
        available_kinds: vec![
            surface::<AuditConfig>("audit"),
            surface::<CaSpec>("ca"),
            surface::<DcvSpec>("dcv"),
            surface::<InstallSpec>("install"),
            surface::<AlertSpec>("alerts"),
        ],
    }
}

fn surface<T: Tagged>(name: &'static str) -> Surface {
    Surface {
        surface: name,
        kinds: T::KINDS
            .iter()
            .copied()
            .filter(|k| T::kind_availability(k) == Some(Availability::Available))
            .collect(),
    }
}

impl BuildInfo {
    /// The text form: one fact per line.
    pub(crate) fn text(&self) -> String {
        let mut out = format!(
            "rota {}\nprotocol version: {}\n",
            self.version, self.protocol_version
        );
        let features: Vec<String> = self
            .features
            .iter()
            .map(|f| format!("{}{}", if f.enabled { "+" } else { "-" }, f.name))
            .collect();
        let _ = writeln!(out, "features: {}", features.join(" "));
        for surface in &self.available_kinds {
            let _ = writeln!(out, "{}: {}", surface.surface, surface.kinds.join(", "));
        }
        out
    }
}
