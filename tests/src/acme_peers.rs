//! The real peers of an ACME issuance over HTTP-01, started together: pebble as the CA,
//! pebble-challtestsrv as its DNS (every name resolves to 127.0.0.1), and a real nginx
//! serving the webroot on the port pebble validates against.

use std::fmt::Write as _;
use std::path::Path;

use crate::nginx::Nginx;
use crate::pebble::{ChallTestSrv, Pebble, PebbleOptions};
use crate::{Rotad, assert_chain_verifies};

/// pebble, its DNS and an nginx whose root is `served`, with pebble's HTTP-01 port on nginx.
pub struct AcmePeers {
    /// The CA.
    pub pebble: Pebble,
    /// The web server pebble validates HTTP-01 against.
    pub nginx: Nginx,
    /// The webroot nginx serves (rota's `dcv.directory`).
    pub served: tempfile::TempDir,
    _dns: ChallTestSrv,
}

impl AcmePeers {
    /// Starts the three peers; `options` shape pebble.
    #[must_use]
    pub fn start(options: PebbleOptions) -> Self {
        let served = tempfile::tempdir().expect("webroot");
        let nginx = Nginx::start(served.path());
        let dns = ChallTestSrv::start();
        let pebble = Pebble::start(&options.dns(&dns).http_port(nginx.port()));
        Self {
            pebble,
            nginx,
            served,
            _dns: dns,
        }
    }

    /// A config with one cert `web` on pebble, answering HTTP-01 in `webroot`; `acme_extra`
    /// goes at the end of the `acme:` block.
    #[must_use]
    pub fn config(&self, webroot: &Path, acme_extra: &str) -> String {
        self.config_for(&["web"], webroot, acme_extra)
    }

    /// A config with a cert per id (domain `<id>.rota.test`) on pebble, answering HTTP-01 in
    /// `webroot`; each installs to `{dir}/installed/<id>`.
    #[must_use]
    pub fn config_for(&self, ids: &[&str], webroot: &Path, acme_extra: &str) -> String {
        let mut config = format!(
            "daemon:\n  database_path: {{dir}}/rota.db\n  listen_addr: 127.0.0.1:0\n  \
             socket_path: {{dir}}/rota.sock\n  check_interval_seconds: 3600\n\
             acme:\n  directory_url: {url}\n  contact_email: ops@rota.test\n  \
             account_credentials_file: {{dir}}/acme/account.json\n  ca_bundle_file: {bundle}\n\
             {acme_extra}certs:\n",
            url = self.pebble.directory_url(),
            bundle = self.pebble.ca_bundle_path().display(),
        );
        for id in ids {
            let _ = write!(
                config,
                "  - id: {id}\n    domains: [{id}.rota.test]\n    \
                 key_path: {{dir}}/keys/{id}.key\n    ca: {{ kind: acme }}\n    \
                 dcv: {{ kind: webroot, directory: {webroot} }}\n    \
                 install: {{ kind: filesystem, directory: {{dir}}/installed/{id} }}\n",
                webroot = webroot.display(),
            );
        }
        config
    }

    /// rotad issuing `web` through the webroot nginx serves.
    #[must_use]
    pub fn rotad(&self) -> Rotad {
        Rotad::start(&self.config(self.served.path(), ""))
    }

    /// Checks `web`'s installed chain with `openssl verify` under pebble's issuing root.
    pub fn verify_chain(&self, rotad: &Rotad) {
        assert_chain_verifies(
            &self.pebble.issuer_roots_path(),
            &rotad.path("installed/web"),
        );
    }
}
