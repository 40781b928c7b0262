//! A cert as a whole object in the shape of cert-manager's `Certificate`, for
//! `rota get certs -o json|yaml` and `GET /api/certificates[/{id}]`: `metadata`, the `spec` as
//! written in `rota.yaml`, and a `status` whose field names are cert-manager's where the
//! meaning is the same (`conditions[]`, `notBefore`, `notAfter`, `renewalTime`,
//! `lastFailureTime`, `failedIssuanceAttempts`), so jq recipes written for
//! `kubectl get certificate -o json` carry over. rota's own facts (`serialNumber`,
//! `nextAttemptAt`, `renewalWindow`, `lastRenewal`) are added beside them. The schema every
//! object satisfies is `schemas/certificate.schema.json`.
//!
//! Times are UTC to the second (`2025-03-01T12:00:00Z`), as Kubernetes writes them: jq's
//! `fromdateiso8601` reads exactly that form and refuses fractional seconds.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::names::CertId;
use crate::status::{ConditionStatus, ConditionType, Reason, RenewalStatus};

/// The `apiVersion` of every rota object.
pub const API_VERSION: &str = "rota.dev/v1";

/// One cert: what was asked for and what rotad observed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Certificate {
    /// Always [`API_VERSION`].
    pub api_version: String,
    /// Always `Certificate`.
    pub kind: String,
    /// Name and generation.
    pub metadata: ObjectMeta,
    /// The cert's entry of `rota.yaml` as written: `${VAR}` unexpanded, paths as typed. A YAML
    /// value, so its keys keep the order they were written in, in JSON as in YAML.
    pub spec: serde_yaml::Value,
    /// What rotad observed and decided.
    pub status: CertificateStatus,
}

/// Every cert, as `kubectl get -o json` prints a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateList {
    /// Always [`API_VERSION`].
    pub api_version: String,
    /// Always `CertificateList`.
    pub kind: String,
    /// The certs, in config order.
    pub items: Vec<Certificate>,
}

/// `metadata` of a [`Certificate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// The cert's id.
    pub name: CertId,
    /// The spec generation; a condition is current when its `observedGeneration` equals it.
    pub generation: u64,
}

/// `status` of a [`Certificate`]; a field rotad knows nothing of is left out.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStatus {
    /// `Ready`, `Issuing`, `Failing`, each with the generation it was computed for.
    pub conditions: Vec<CertificateCondition>,
    /// The installed cert's notBefore.
    #[serde(
        default,
        with = "kube_time::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub not_before: Option<OffsetDateTime>,
    /// The installed cert's notAfter.
    #[serde(
        default,
        with = "kube_time::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub not_after: Option<OffsetDateTime>,
    /// When rotad will renew: inside the CA's ARI window, else the threshold's date.
    #[serde(
        default,
        with = "kube_time::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub renewal_time: Option<OffsetDateTime>,
    /// The installed cert's serial number, lowercase hex as `rota describe` shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    /// When the latest renewal failed; absent when it did not.
    #[serde(
        default,
        with = "kube_time::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_failure_time: Option<OffsetDateTime>,
    /// Consecutive failed renewals of the current spec; absent after a success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_issuance_attempts: Option<u32>,
    /// The end of the failure backoff: no automatic attempt before it.
    #[serde(
        default,
        with = "kube_time::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub next_attempt_at: Option<OffsetDateTime>,
    /// The renewal window the CA suggests (ACME ARI), when it publishes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_window: Option<RenewalWindowStatus>,
    /// The latest renewal attempt (`rota log ID --renewal N` shows its steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_renewal: Option<LastRenewal>,
    /// The key at `key_path`: its type and pin, when rotad can read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<super::KeyInfo>,
    /// The key prepared at `<key_path>.next` (under `key.rotation`): its pin can be published
    /// before the renewal that switches to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_private_key: Option<super::KeyInfo>,
}

/// One condition, spelled as Kubernetes spells conditions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateCondition {
    /// Which condition.
    #[serde(rename = "type")]
    pub type_: ConditionType,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// Why, CamelCase.
    pub reason: Reason,
    /// Operator-facing detail.
    pub message: String,
    /// When `status` last changed.
    #[serde(with = "kube_time")]
    pub last_transition_time: OffsetDateTime,
    /// The `metadata.generation` this condition was computed for.
    pub observed_generation: u64,
}

/// The CA's suggested renewal window (RFC 9773).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RenewalWindowStatus {
    /// The window opens.
    #[serde(with = "kube_time")]
    pub start: OffsetDateTime,
    /// The window closes.
    #[serde(with = "kube_time")]
    pub end: OffsetDateTime,
    /// Where the CA explains why the window moved, if it says.
    #[serde(
        default,
        rename = "explanationURL",
        skip_serializing_if = "Option::is_none"
    )]
    pub explanation_url: Option<String>,
}

/// The latest renewal attempt of a cert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastRenewal {
    /// Its audit id.
    pub id: i64,
    /// Running, succeeded, failed or interrupted.
    pub status: RenewalStatus,
    /// Why it was started.
    pub reason: Reason,
    /// When it began.
    #[serde(with = "kube_time")]
    pub started_at: OffsetDateTime,
    /// When it ended, unless it is running.
    #[serde(
        default,
        with = "kube_time::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub finished_at: Option<OffsetDateTime>,
}

/// Kubernetes' `metav1.Time`: RFC 3339 in UTC, whole seconds. Reading accepts any RFC 3339.
mod kube_time {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    pub(super) fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::wire::rfc3339(*t))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let text = String::deserialize(d)?;
        OffsetDateTime::parse(&text, &Rfc3339).map_err(serde::de::Error::custom)
    }

    /// The same for an optional time.
    pub(super) mod option {
        use serde::{Deserialize, Deserializer, Serializer};
        use time::OffsetDateTime;

        // serde's `with` hands the field by reference, so the signature is not ours to choose.
        #[allow(clippy::ref_option)]
        pub(in super::super) fn serialize<S: Serializer>(
            t: &Option<OffsetDateTime>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }

        pub(in super::super) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<OffsetDateTime>, D::Error> {
            #[derive(Deserialize)]
            struct Wrapped(#[serde(with = "super")] OffsetDateTime);
            Ok(Option::<Wrapped>::deserialize(d)?.map(|Wrapped(t)| t))
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn condition() -> CertificateCondition {
        CertificateCondition {
            type_: ConditionType::Ready,
            status: ConditionStatus::True,
            reason: Reason::UpToDate,
            message: "valid until 2025-05-01".into(),
            last_transition_time: datetime!(2025-03-01 13:00:00.75 +1),
            observed_generation: 3,
        }
    }

    #[test]
    fn fields_are_camel_case_and_times_whole_utc_seconds() {
        let json = serde_json::to_value(condition()).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({
                "type": "Ready",
                "status": "True",
                "reason": "UpToDate",
                "message": "valid until 2025-05-01",
                "lastTransitionTime": "2025-03-01T12:00:00Z",
                "observedGeneration": 3,
            })
        );
    }

    #[test]
    fn unknown_status_fields_are_left_out_and_read_back_as_absent() {
        let status = CertificateStatus {
            conditions: vec![condition()],
            not_after: Some(datetime!(2025-05-01 12:00:00 UTC)),
            ..CertificateStatus::default()
        };
        let json = serde_json::to_value(&status).expect("serializes");
        let keys: Vec<&str> = json
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["conditions", "notAfter"]);
        let back: CertificateStatus = serde_json::from_value(json).expect("reads back");
        assert_eq!(back.not_after, status.not_after);
        assert_eq!(back.renewal_time, None);
    }
}
