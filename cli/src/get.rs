//! `rota get certs [ID]`: the table (`-o wide` adds columns), whole objects in the shape of
//! cert-manager's `Certificate` (`-o json|yaml`), and `-w`, which prints the table and then a
//! row each time a cert changes, as `kubectl get -w` does, until interrupted. The watch polls
//! rotad; an event stream can replace the polling without changing what is printed.

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use rota_api::CertId;
use rota_api::wire::certificate::{Certificate, CertificateList};
use rota_api::wire::{CertDetail, CertSummary};
use serde::Serialize;
use time::OffsetDateTime;

use crate::client::Daemon;
use crate::exit::CliError;
use crate::{DataFormat, ListFormat, certs_view, emit, serialize, table, write_stdout};

/// How often `-w` asks rotad again: a state change shows within about a second.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Runs `rota get certs`, for one cert when `id` is given.
pub(crate) async fn certs(
    daemon: &Daemon,
    id: Option<&CertId>,
    output: Option<ListFormat>,
    watch: bool,
) -> Result<(), CliError> {
    let layout = match output {
        None => Layout::Table { wide: false },
        Some(ListFormat::Wide) => Layout::Table { wide: true },
        Some(ListFormat::Json) => Layout::Objects(DataFormat::Json),
        Some(ListFormat::Yaml) => Layout::Objects(DataFormat::Yaml),
    };
    match (layout, watch) {
        (Layout::Table { wide }, false) => {
            let certs = summaries(daemon, id).await?;
            emit(&certs_view::certs_table(&certs, wide, now()))
        }
        (Layout::Objects(format), false) => emit(&match id {
            Some(id) => serialize(format, &object(daemon, id).await?)?,
            None => serialize(format, &list(daemon).await?)?,
        }),
        (Layout::Table { wide }, true) => {
            let mut view = TableView {
                wide,
                widths: Vec::new(),
            };
            follow(async || summaries(daemon, id).await, &mut view).await
        }
        (Layout::Objects(format), true) => {
            let poll = async || match id {
                Some(id) => Ok(vec![object(daemon, id).await?]),
                None => Ok(list(daemon).await?.items),
            };
            follow(poll, &mut ObjectView { format }).await
        }
    }
}

/// How `rota get certs` prints.
#[derive(Debug, Clone, Copy)]
enum Layout {
    /// Rows of the cert table.
    Table { wide: bool },
    /// Whole objects.
    Objects(DataFormat),
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// The table rows of every cert, or of `id` alone.
async fn summaries(daemon: &Daemon, id: Option<&CertId>) -> Result<Vec<CertSummary>, CliError> {
    match id {
        Some(id) => {
            let detail: CertDetail = daemon.get(&format!("/api/certs/{id}")).await?;
            Ok(vec![detail.summary])
        }
        None => daemon.get("/api/certs").await,
    }
}

async fn object(daemon: &Daemon, id: &CertId) -> Result<Certificate, CliError> {
    daemon.get(&format!("/api/certificates/{id}")).await
}

async fn list(daemon: &Daemon) -> Result<CertificateList, CliError> {
    daemon.get("/api/certificates").await
}

/// Prints what `poll` returns now, then, every [`WATCH_INTERVAL`], each item that is new or
/// changed; ends when rotad fails to answer or stdout's reader goes away.
async fn follow<T: Watched, V: WatchView<T>>(
    mut poll: impl AsyncFnMut() -> Result<Vec<T>, CliError>,
    view: &mut V,
) -> Result<(), CliError> {
    let mut changes = Changes::default();
    let items = poll().await?;
    changes.update(&items);
    if !print(&view.first(&items)?)? {
        return Ok(());
    }
    loop {
        tokio::time::sleep(WATCH_INTERVAL).await;
        let items = poll().await?;
        for item in changes.update(&items) {
            if !print(&view.changed(item)?)? {
                return Ok(());
            }
        }
    }
}

/// Writes `text`; `Ok(false)` once the reader has gone (`rota get certs -w | head`), so a
/// watch ends at the next row it would print rather than polling on for nobody.
fn print(text: &str) -> Result<bool, CliError> {
    match write_stdout(text) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(CliError::failed(format!("cannot write to stdout: {e}"))),
    }
}

/// What a watch follows: one item per cert, compared by its JSON form.
trait Watched: Serialize {
    /// The cert it is about.
    fn cert_id(&self) -> &CertId;
}

impl Watched for CertSummary {
    fn cert_id(&self) -> &CertId {
        &self.id
    }
}

impl Watched for Certificate {
    fn cert_id(&self) -> &CertId {
        &self.metadata.name
    }
}

/// The last state seen of each cert, to tell which ones a poll changed.
#[derive(Debug, Default)]
struct Changes {
    last: HashMap<CertId, Option<serde_json::Value>>,
}

impl Changes {
    /// The items of `items` that are new or differ from the previous call, in order. A cert
    /// that is gone is forgotten, so it shows again if it comes back.
    fn update<'a, T: Watched>(&mut self, items: &'a [T]) -> Vec<&'a T> {
        let mut next = HashMap::with_capacity(items.len());
        let mut changed = Vec::new();
        for item in items {
            // Our wire types always serialize; were one not to, it counts as changed.
            let state = serde_json::to_value(item).ok();
            if state.is_none() || self.last.get(item.cert_id()) != Some(&state) {
                changed.push(item);
            }
            next.insert(item.cert_id().clone(), state);
        }
        self.last = next;
        changed
    }
}

/// How a watch prints its first poll and each change after it.
trait WatchView<T> {
    /// Everything the first poll returned.
    fn first(&mut self, items: &[T]) -> Result<String, CliError>;
    /// One item that changed.
    fn changed(&self, item: &T) -> Result<String, CliError>;
}

/// The cert table, then one row per change, aligned on the first table's columns.
struct TableView {
    wide: bool,
    widths: Vec<usize>,
}

impl WatchView<CertSummary> for TableView {
    fn first(&mut self, items: &[CertSummary]) -> Result<String, CliError> {
        let (headers, rows) = certs_view::certs_grid(items, self.wide, now());
        self.widths = table::widths(&headers, &rows);
        Ok(table::render("", &headers, &rows))
    }

    fn changed(&self, item: &CertSummary) -> Result<String, CliError> {
        let (_, rows) = certs_view::certs_grid(std::slice::from_ref(item), self.wide, now());
        Ok(rows
            .iter()
            .map(|row| table::line(&self.widths, row) + "\n")
            .collect())
    }
}

/// Each object as its own document, as `kubectl get -w -o json|yaml` prints them.
struct ObjectView {
    format: DataFormat,
}

impl WatchView<Certificate> for ObjectView {
    fn first(&mut self, items: &[Certificate]) -> Result<String, CliError> {
        items.iter().map(|item| self.changed(item)).collect()
    }

    fn changed(&self, item: &Certificate) -> Result<String, CliError> {
        let text = serialize(self.format, item)?;
        Ok(match self.format {
            DataFormat::Json => text,
            DataFormat::Yaml => format!("---\n{text}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use rota_api::status::Reason;
    use serde::Deserialize;

    use super::*;
    use crate::certs_view::tests::web;

    fn named(id: &str) -> CertSummary {
        CertSummary {
            id: CertId::new(id).expect("valid id"),
            ..web()
        }
    }

    #[test]
    fn a_watch_prints_what_is_new_or_changed_and_nothing_else() {
        let mut changes = Changes::default();
        let ids = |changed: Vec<&CertSummary>| -> Vec<String> {
            changed.iter().map(|c| c.id.to_string()).collect()
        };
        let (web, api) = (named("web"), named("api"));
        assert_eq!(
            ids(changes.update(&[web.clone(), api.clone()])),
            ["web", "api"],
            "the first poll is all new"
        );
        assert!(
            changes.update(&[web.clone(), api.clone()]).is_empty(),
            "nothing changed"
        );
        let renewing = CertSummary {
            issuing: true,
            ready_reason: Reason::Renewing,
            ..api.clone()
        };
        assert_eq!(
            ids(changes.update(&[web.clone(), renewing])),
            ["api"],
            "one cert changed"
        );
        assert!(
            changes.update(std::slice::from_ref(&web)).is_empty(),
            "a removal prints nothing"
        );
        assert_eq!(
            ids(changes.update(&[web, api])),
            ["api"],
            "a cert that comes back is new again"
        );
    }

    #[test]
    fn rows_after_the_table_keep_its_columns() {
        let mut view = TableView {
            wide: false,
            widths: Vec::new(),
        };
        let first = view.first(&[named("mail-server")]).expect("renders");
        let later = view.changed(&named("api")).expect("renders");
        let header = first.lines().next().expect("a header");
        assert_eq!(
            later.find("example.com"),
            header.find("DOMAINS"),
            "{first}{later}"
        );
        assert!(later.ends_with('\n'), "{later:?}");
    }

    #[test]
    fn watched_yaml_objects_are_separate_documents() {
        let object: Certificate = serde_json::from_value(serde_json::json!({
            "apiVersion": "rota.dev/v1",
            "kind": "Certificate",
            "metadata": { "name": "web", "generation": 1 },
            "spec": { "id": "web" },
            "status": { "conditions": [] },
        }))
        .expect("an object");
        let mut view = ObjectView {
            format: DataFormat::Yaml,
        };
        let text = view
            .first(&[object.clone(), object.clone()])
            .expect("renders");
        let documents: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(&text)
            .map(|document| serde_json::Value::deserialize(document).expect("a YAML document"))
            .collect();
        let expected = serde_json::to_value(&object).expect("JSON");
        assert_eq!(documents, [expected.clone(), expected]);
    }
}
