//! Settings rotad reads once, when it starts: where its state lives and how its listeners are
//! guarded. `rota apply` may not change them at all (they move with an edit of the file on the
//! server and a restart); a hand edit picked up by the watcher changes everything else and
//! leaves these at their running values until rotad restarts. So neither path can move the
//! database, the socket or the CA, widen the path allow-list, or weaken a bound listener.

use super::LoadedConfig;
use super::access::{paths_outside, tls_directory_moved, tls_problem};
use super::error::{ConfigErrors, ConfigIssue};
use super::field_path::item;
use super::schema::Config;

/// Declares the restart-only fields once: their field paths, the comparison and the copy.
macro_rules! restart_only {
    ($($path:literal => $($field:ident).+,)*) => {
        /// The field paths of every restart-only setting whose value differs between the
        /// `running` config and `next`.
        #[must_use]
        fn restart_only_changes(running: &Config, next: &Config) -> Vec<&'static str> {
            let mut changed = Vec::new();
            $( if running.$($field).+ != next.$($field).+ { changed.push($path); } )*
            changed
        }

        /// Puts the running value of every restart-only setting into `next`.
        fn keep_running_values(next: &mut Config, running: &Config) {
            $( next.$($field).+.clone_from(&running.$($field).+); )*
        }
    };
}

restart_only! {
    "daemon.database_path" => daemon.database_path,
    "daemon.socket_path" => daemon.socket_path,
    "daemon.socket_group" => daemon.socket_group,
    "daemon.listen_addr" => daemon.listen_addr,
    "daemon.api_token_file" => daemon.api_token_file,
    "daemon.allowed_hosts" => daemon.allowed_hosts,
    "daemon.tls" => daemon.tls,
    "daemon.allowed_paths" => daemon.allowed_paths,
    "local_ca.directory" => local_ca.directory,
    "audit" => audit,
    "cluster" => cluster,
}

impl LoadedConfig {
    /// For `rota apply`: one located issue per restart-only setting this config changes
    /// against the `running` one (and for a move of the cert the TLS listener serves).
    #[must_use]
    pub fn restart_only_issues(&self, running: &Config) -> Vec<ConfigIssue> {
        let file = self.path.display().to_string();
        restart_only_changes(running, &self.config)
            .into_iter()
            .map(|field| {
                self.issue_at(
                    field,
                    format!("`{field}` differs from the running config, and `rota apply` cannot change it"),
                    Some("rotad reads it only at start: edit the config file on the server and restart rotad".to_owned()),
                )
            })
            .chain(
                tls_directory_moved(running, &self.config)
                    .map(|p| self.positions.place(&file, p)),
            )
            .collect()
    }

    /// For a hand edit of the file: keeps the `running` values of the restart-only settings
    /// and returns the ones the file changes (in force after a restart). Refused when a cert
    /// path lies outside the `daemon.allowed_paths` in force, or the cert the TLS listener
    /// serves is gone or installed elsewhere.
    pub fn keep_restart_only(
        &mut self,
        running: &Config,
    ) -> Result<Vec<&'static str>, ConfigErrors> {
        let changed = restart_only_changes(running, &self.config);
        keep_running_values(&mut self.config, running);
        let certs = self
            .config
            .certs
            .iter()
            .enumerate()
            .map(|(row, cert)| (item("certs", row), cert));
        let mut found = paths_outside(&self.config.daemon.allowed_paths, certs);
        found.extend(tls_problem(&self.config));
        found.extend(tls_directory_moved(running, &self.config));
        if found.is_empty() {
            Ok(changed)
        } else {
            let file = self.path.display().to_string();
            Err(ConfigErrors(
                found
                    .into_iter()
                    .map(|p| self.positions.place(&file, p))
                    .collect(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::config::{InstallSpec, load_str_with_env};

    fn load(daemon: &str, key_dir: &str) -> LoadedConfig {
        let text = format!(
            "daemon:\n{daemon}certs:\n  - {{ id: a, domains: [a.test], key_path: {key_dir}/a.key, ca: {{ kind: local }},\n      install: {{ kind: filesystem, directory: /srv/a }} }}\n"
        );
        load_str_with_env(Path::new("/etc/rota/rota.yaml"), text, &|_| None)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_hand_edit_keeps_the_running_listener_and_paths_and_names_them() {
        let running = load(
            "  listen_addr: 127.0.0.1:7878\n  database_path: /var/lib/rota/rota.db\n",
            "/keys",
        );
        let mut edited = load(
            "  listen_addr: 127.0.0.1:9999\n  database_path: /tmp/elsewhere.db\n  check_interval_seconds: 60\n",
            "/keys",
        );
        let changed = edited.keep_restart_only(&running.config).unwrap();
        assert_eq!(changed, ["daemon.database_path", "daemon.listen_addr"]);
        assert_eq!(
            edited.config.daemon.listen_addr,
            running.config.daemon.listen_addr
        );
        assert_eq!(
            edited.config.daemon.database_path,
            PathBuf::from("/var/lib/rota/rota.db")
        );
        assert_eq!(
            edited.config.daemon.check_interval_seconds, 60,
            "the rest is taken"
        );
    }

    #[test]
    fn a_hand_edit_is_held_to_the_running_allow_list() {
        let running = load("  allowed_paths: [/keys, /srv]\n", "/keys");
        let mut widened = load("  allowed_paths: [/keys, /srv, /other]\n", "/other");
        let errors = widened.keep_restart_only(&running.config).unwrap_err();
        assert_eq!(errors.0.len(), 1, "{errors}");
        assert_eq!(errors.0[0].path, "certs[0].key_path");
        assert_eq!(errors.0[0].line, 4, "located at the cert: {errors}");
    }

    #[test]
    fn a_hand_edit_cannot_drop_the_cert_the_tls_listener_serves() {
        let running = load("  tls: { cert_id: a }\n", "/keys");
        let mut edited = load("  check_interval_seconds: 60\n", "/keys");
        edited.config.certs[0].id = crate::names::CertId::new("b").unwrap();
        let errors = edited.keep_restart_only(&running.config).unwrap_err();
        assert_eq!(errors.0[0].path, "daemon.tls.cert_id", "{errors}");
    }

    #[test]
    fn the_served_cert_cannot_move_its_install_directory_before_a_restart() {
        let running = load("  tls: { cert_id: a }\n", "/keys");
        let mut moved = load("  tls: { cert_id: a }\n", "/keys");
        let InstallSpec::Filesystem(fs) = &mut moved.config.certs[0].install else {
            panic!("the test cert installs to the filesystem")
        };
        fs.directory = PathBuf::from("/srv/elsewhere");
        let issues = moved.restart_only_issues(&running.config);
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].path, "certs[0].install.directory");
        let errors = moved.keep_restart_only(&running.config).unwrap_err();
        assert_eq!(errors.0[0].path, "certs[0].install.directory", "{errors}");
        assert!(running.restart_only_issues(&running.config).is_empty());
    }

    #[test]
    fn apply_names_each_moved_field_where_it_is_written() {
        let running = load("  socket_path: /run/rota.sock\n", "/keys");
        let moved = load(
            "  socket_path: /tmp/rota.sock\n  allowed_hosts: [rota.example]\n",
            "/keys",
        );
        let issues = moved.restart_only_issues(&running.config);
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["daemon.socket_path", "daemon.allowed_hosts"]);
        assert_eq!((issues[0].line, issues[1].line), (2, 3));
        assert!(moved.restart_only_issues(&moved.config).is_empty());
    }
}
