//! flotilla's override engine: the per-cluster customisation step of rendering, with Karmada's semantics.
//!
//! An `OverridePolicy` rule holds *overriders*: edits to apply to a resource template before it is sent to
//! a cluster. `render` picks the matching policies and rules for a (template, cluster) pair, in Karmada's
//! order, and calls [`apply_overriders`] once per rule on its copy of the object. This crate does the
//! editing and nothing else: no IO, no clock, no policy selection. The same input always gives the same
//! output, and no input makes it panic.
//!
//! # Main types
//!
//! * [`Overriders`]: one rule's overriders as written in the policy (deserialise it from the
//!   `overriders` field with serde). Its lists are [`ImageOverrider`], [`CommandArgsOverrider`] (command
//!   and args), [`LabelAnnotationOverrider`] (labels and annotations), [`FieldOverrider`] and
//!   [`PlaintextOverrider`].
//! * [`Report`]: what happened, as [`AppliedOp`]s (`replace /spec/replicas 1 -> 3`, for
//!   `flotilla explain`) and [`OverrideWarning`]s (e.g. an image Tag value that is neither tag nor digest).
//! * [`OverrideError`]: the first overrider that could not be applied: which list ([`OverriderKind`]),
//!   which entry, the operation as written and why. The caller drops the object for that cluster.
//! * [`jsonpatch::apply_patch`]: a strict RFC 6902 implementation (all six operations), also used by the
//!   `plaintext` and `fieldOverrider` overriders; [`image::ImageRef`]: Karmada's view of an image
//!   reference; [`pointer`](mod@pointer): strict RFC 6901 pointers.
//!
//! # Order and semantics
//!
//! Within a rule the order is fixed: image, command, args, labels, annotations, field, plaintext; within
//! each list, entries apply one after another, each seeing the result of the previous one. All `plaintext`
//! entries of a rule form one RFC 6902 patch applied as a unit (the object is discarded on error, so no copy is made for rollback). Each module documents its overrider's exact
//! rules, and where flotilla is stricter than Karmada.
//!
//! # The key design decision: strict by construction, the library only mutates
//!
//! Karmada's JSON Patch library is lax (negative and zero-padded array indices), and the `json-patch`
//! crate's edge cases are not a contract. So every pointer is checked by [`pointer`](mod@pointer) *before* the
//! `json-patch` crate performs an `add`, `replace` or array removal; the crate never decides what is valid.
//! That gives one strictness for every overrider, errors that say which part of a path failed
//! (`parent /metadata/labels of /metadata/labels/x does not exist`), and independence from the library's
//! version. Patches run on a copy that replaces the document only on success, so a failed patch leaves
//! nothing behind, and object keys keep their order (new keys are appended, removals do not reorder),
//! which keeps rendered output stable.
//!
//! # Example
//!
//! ```
//! use overrides::{apply_overriders, Overriders};
//! use serde_json::json;
//!
//! let mut deployment = json!({
//!     "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx"},
//!     "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.17.0"}]}}}
//! });
//! let rule: Overriders = serde_json::from_value(json!({
//!     "imageOverrider": [
//!         {"component": "Registry", "operator": "replace", "value": "dc-1.registry.io"},
//!         {"component": "Tag", "operator": "add", "value": "-alpine"}
//!     ],
//!     "annotationsOverrider": [{"operator": "add", "value": {"flotilla.dev/region": "dc-1"}}],
//!     "plaintext": [{"path": "/spec/replicas", "operator": "replace", "value": 2}]
//! })).unwrap();
//!
//! let report = apply_overriders(&mut deployment, &rule).unwrap();
//! let image = &deployment["spec"]["template"]["spec"]["containers"][0]["image"];
//! assert_eq!(image, "dc-1.registry.io/nginx:1.17.0-alpine");
//! assert_eq!(deployment["spec"]["replicas"], 2);
//! assert_eq!(report.applied.last().unwrap().operation, "replace /spec/replicas 1 -> 2");
//!
//! let bad: Overriders = serde_json::from_value(json!({
//!     "plaintext": [{"path": "/metadata/labels/team", "operator": "add", "value": "a"}]
//! })).unwrap();
//! let err = apply_overriders(&mut deployment, &bad).unwrap_err();
//! assert_eq!(err.to_string(), "plaintext[0] add /metadata/labels/team: \
//!     parent /metadata/labels of /metadata/labels/team does not exist");
//! ```

mod containers;
mod field;
pub mod image;
mod image_overrider;
pub mod jsonpatch;
mod metadata;
mod model;
mod plaintext;
pub mod pointer;
mod workload;
mod yaml;

pub use model::{
    AppliedOp, CommandArgsOverrider, FieldOp, FieldOverrider, ImageOverrider, ImagePredicate, LabelAnnotationOverrider,
    OverrideError, OverrideWarning, OverriderKind, Overriders, PlaintextOverrider, Report,
};

use serde_json::Value;

/// Applies one rule's overriders to `obj` in Karmada's fixed order:
/// image, command, args, labels, annotations, field, plaintext (plaintext as one RFC 6902 patch).
/// On error `obj` may be partly modified; the caller discards it.
pub fn apply_overriders(obj: &mut Value, ov: &Overriders) -> Result<Report, OverrideError> {
    let mut report = Report::default();
    image_overrider::apply(obj, &ov.image_overrider, &mut report)?;
    containers::apply(obj, &ov.command_overrider, containers::Field::Command, &mut report)?;
    containers::apply(obj, &ov.args_overrider, containers::Field::Args, &mut report)?;
    metadata::apply(obj, &ov.labels_overrider, metadata::Target::Labels, &mut report)?;
    metadata::apply(
        obj,
        &ov.annotations_overrider,
        metadata::Target::Annotations,
        &mut report,
    )?;
    field::apply(obj, &ov.field_overrider, &mut report)?;
    plaintext::apply(obj, &ov.plaintext, &mut report)?;
    Ok(report)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(v: Value) -> Overriders {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn fixed_order_image_command_args_labels_annotations_field_plaintext() {
        let mut obj = json!({
            "kind": "Deployment", "metadata": {"name": "x"},
            "data": {"cfg": "a: 1\n"},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
        });
        // Plaintext is listed first but runs last: it sees the image, labels and field already changed.
        let report = apply_overriders(
            &mut obj,
            &rule(json!({
                "plaintext": [
                    {"path": "/spec/template/spec/containers/0/image", "operator": "replace", "value": "final"},
                    {"path": "/metadata/labels/x", "operator": "remove"}
                ],
                "fieldOverrider": [{
                    "fieldPath": "/data/cfg",
                    "yaml": [{"subPath": "/a", "operator": "replace", "value": 2}]
                }],
                "annotationsOverrider": [{"operator": "add", "value": {"k": "v"}}],
                "labelsOverrider": [{"operator": "add", "value": {"x": "y"}}],
                "argsOverrider": [{"containerName": "c", "operator": "add", "value": ["--a"]}],
                "commandOverrider": [{"containerName": "c", "operator": "add", "value": ["run"]}],
                "imageOverrider": [{"component": "Tag", "operator": "replace", "value": "v1"}]
            })),
        )
        .unwrap();
        let kinds: Vec<_> = report.applied.iter().map(|a| a.overrider).collect();
        assert_eq!(
            kinds,
            [
                OverriderKind::Image,
                OverriderKind::Command,
                OverriderKind::Args,
                OverriderKind::Labels,
                OverriderKind::Annotations,
                OverriderKind::Field,
                OverriderKind::Plaintext,
                OverriderKind::Plaintext,
            ]
        );
        assert_eq!(
            report.applied[6].operation,
            r#"replace /spec/template/spec/containers/0/image "nginx:v1" -> "final""#
        );
        assert_eq!(obj["metadata"]["labels"], json!({}));
        assert_eq!(obj["data"]["cfg"], "a: 2\n");
        assert_eq!(
            obj["spec"]["template"]["spec"]["containers"][0]["command"],
            json!(["run"])
        );
    }

    #[test]
    fn first_error_stops() {
        let mut obj = json!({"kind": "Pod", "metadata": {}, "spec": {"containers": [{"name": "c", "image": "a"}]}});
        let e = apply_overriders(
            &mut obj,
            &rule(json!({
                "labelsOverrider": [{"operator": "add", "value": {"a": "b"}}, {"operator": "bogus", "value": {}}],
                "plaintext": [{"path": "/x", "operator": "add", "value": 1}]
            })),
        )
        .unwrap_err();
        assert_eq!(e.overrider, OverriderKind::Labels);
        assert_eq!(e.index, 1);
        assert_eq!(e.operation, "bogus {}");
        assert!(obj.get("x").is_none());
    }

    #[test]
    fn empty_rule_changes_nothing() {
        let mut obj = json!({"kind": "Pod", "metadata": {"name": "p"}});
        let before = obj.clone();
        assert_eq!(
            apply_overriders(&mut obj, &Overriders::default()).unwrap(),
            Report::default()
        );
        assert_eq!(obj, before);
    }

    #[test]
    fn karmada_seed_scenario() {
        let mut obj = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "nginx", "labels": {"ha-mode": "multi-zone-replication"}},
            "spec": {"template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.17.0"}]}}}
        });
        apply_overriders(
            &mut obj,
            &rule(json!({
                "imageOverrider": [
                    {"component": "Registry", "operator": "add", "value": "dc-1.registry.io"},
                    {"component": "Tag", "operator": "replace", "value": "1.17.0-alpine"}
                ],
                "annotationsOverrider": [{"operator": "add", "value": {"flotilla.dev/site": "dc-1"}}]
            })),
        )
        .unwrap();
        assert_eq!(
            obj["spec"]["template"]["spec"]["containers"][0]["image"],
            "dc-1.registry.io/nginx:1.17.0-alpine"
        );
        assert_eq!(obj["metadata"]["annotations"]["flotilla.dev/site"], "dc-1");
    }
}
