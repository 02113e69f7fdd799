//! `imageOverrider`: edits the registry, repository or tag of container images exactly as Karmada does.

use crate::image::ImageRef;
use crate::model::{quoted, type_name, ImageOverrider, OverrideError, OverriderKind, Report};
use crate::{pointer, workload};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Component {
    Registry,
    Repository,
    Tag,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Add,
    Replace,
    Remove,
}

/// One validated entry.
struct Edit<'a> {
    component: Component,
    operator: Operator,
    value: &'a str,
}

impl<'a> Edit<'a> {
    fn from_entry(ov: &'a ImageOverrider) -> Result<Self, String> {
        let component = match ov.component.as_str() {
            "Registry" => Component::Registry,
            "Repository" => Component::Repository,
            "Tag" => Component::Tag,
            other => {
                return Err(format!(
                    "unknown component {} (expected Registry, Repository or Tag)",
                    quoted(other)
                ))
            }
        };
        let operator = match ov.operator.as_str() {
            "add" => Operator::Add,
            "replace" => Operator::Replace,
            "remove" => Operator::Remove,
            other => {
                return Err(format!(
                    "unknown operator {} (expected add, replace or remove)",
                    quoted(other)
                ))
            }
        };
        Ok(Edit {
            component,
            operator,
            value: ov.value.as_deref().unwrap_or(""),
        })
    }

    /// Applies the edit; `Err` carries the reason the image was left unchanged.
    fn apply(&self, img: &mut ImageRef) -> Result<(), String> {
        let v = self.value;
        match (self.component, self.operator) {
            (Component::Registry, Operator::Add) => img.registry.push_str(v),
            (Component::Registry, Operator::Replace) => img.registry = v.to_owned(),
            (Component::Registry, Operator::Remove) => img.registry.clear(),
            (Component::Repository, Operator::Add) => img.repository.push_str(v),
            (Component::Repository, Operator::Replace) => img.repository = v.to_owned(),
            (Component::Repository, Operator::Remove) => img.repository.clear(),
            (Component::Tag, Operator::Remove) => img.remove_tag_or_digest(),
            (Component::Tag, op) => {
                let candidate = match op {
                    Operator::Add => format!("{}{v}", img.tag_or_digest().unwrap_or("")),
                    _ => v.to_owned(),
                };
                if !img.set_tag_or_digest(&candidate) {
                    return Err(format!("{} is neither a valid tag nor a digest", quoted(&candidate)));
                }
            }
        }
        Ok(())
    }
}

/// The entry as written, e.g. `Tag add "-alpine"` or `Registry remove at /spec/initContainers/0/image`.
fn written(ov: &ImageOverrider) -> String {
    let mut s = format!("{} {}", ov.component, ov.operator);
    if let (Some(v), false) = (&ov.value, ov.operator == "remove") {
        s.push(' ');
        s.push_str(&quoted(v));
    }
    if let Some(p) = &ov.predicate {
        s.push_str(" at ");
        s.push_str(&p.path);
    }
    s
}

/// The image pointers of the workload's containers, each checked to hold a string.
fn default_targets(obj: &mut Value) -> Result<Vec<String>, String> {
    let Some((path, containers)) = workload::containers_mut(obj)? else {
        return Ok(Vec::new());
    };
    let mut targets = Vec::with_capacity(containers.len());
    for (n, container) in containers.iter().enumerate() {
        let at = format!("{path}/{n}");
        let Value::Object(c) = container else {
            return Err(format!("{at} is {}, expected a container object", type_name(container)));
        };
        match c.get("image") {
            Some(Value::String(_)) => targets.push(format!("{at}/image")),
            None | Some(Value::Null) => return Err(format!("container {at} has no image")),
            Some(other) => return Err(format!("{at}/image is {}, not a string", type_name(other))),
        }
    }
    Ok(targets)
}

/// Targets: with `predicate.path`, exactly that pointer (it must exist and hold a string); without, every
/// `containers[*].image` of the workload kinds in [`crate::workload`] (other kinds: no change, no error).
/// Each image is parsed with [`crate::image::ImageRef`], edited, reassembled and written back.
///
/// | component | add | replace | remove |
/// | --- | --- | --- | --- |
/// | `Registry` | registry + value (string concatenation) | value | `""` |
/// | `Repository` | repository + value | value | `""` |
/// | `Tag` | set-tag-or-digest((tag or digest) + value) | set-tag-or-digest(value) | clear tag, else digest |
///
/// A Tag value that is neither a valid tag nor a digest leaves the image unchanged (Karmada: silently;
/// flotilla also warns). A result that is not a valid image reference (e.g. `host/:v1` after removing the
/// repository) is an error (Karmada writes it out). The predicate pointer is a strict RFC 6901 pointer
/// (Karmada splits on `/` without unescaping `~0`/`~1`; the two agree on every path without `~`).
pub(crate) fn apply(obj: &mut Value, list: &[ImageOverrider], report: &mut Report) -> Result<(), OverrideError> {
    for (index, ov) in list.iter().enumerate() {
        let operation = written(ov);
        let err = |message: String| OverrideError::new(OverriderKind::Image, index, &operation, message);
        let edit = Edit::from_entry(ov).map_err(err)?;
        let targets = match &ov.predicate {
            Some(p) => vec![p.path.clone()],
            None => default_targets(obj).map_err(err)?,
        };
        for path in targets {
            let slot = pointer::get_mut(obj, &path).map_err(|e| err(format!("predicate path: {e}")))?;
            let Value::String(old) = slot else {
                return Err(err(format!("{path} is {}, not an image string", type_name(slot))));
            };
            let mut img = ImageRef::parse(old).map_err(|e| err(format!("{path}: {e}")))?;
            if let Err(reason) = edit.apply(&mut img) {
                let message = format!("{reason}: image {} at {path} left unchanged", quoted(old));
                report.warn(OverriderKind::Image, index, message);
                continue;
            }
            let new = img.to_string();
            let back = ImageRef::parse(&new).map_err(|e| {
                err(format!(
                    "result {} at {path} is not a valid image reference: {e}",
                    quoted(&new)
                ))
            })?;
            if back.registry != img.registry {
                let message = format!(
                    "result {} reads back with registry {} and repository {}: \
                     a registry needs a \".\" or \":\" or must be \"localhost\"",
                    quoted(&new),
                    quoted(&back.registry),
                    quoted(&back.repository)
                );
                report.warn(OverriderKind::Image, index, message);
            }
            let description = format!("replace {path} {} -> {}", quoted(old), quoted(&new));
            *slot = Value::String(new);
            report.applied(OverriderKind::Image, index, description);
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::model::ImagePredicate;
    use serde_json::json;

    const SHA: &str = "sha256:7a8d2e39ef1d8a9bc9ec9ae6c0f4c4f3e1ec6bd4cdc0a1c9ee0d8a4a10ec1f41";

    fn entry(component: &str, operator: &str, value: Option<&str>) -> ImageOverrider {
        ImageOverrider {
            predicate: None,
            component: component.into(),
            operator: operator.into(),
            value: value.map(Into::into),
        }
    }

    fn deployment(images: &[&str]) -> Value {
        let containers: Vec<Value> = images
            .iter()
            .enumerate()
            .map(|(i, img)| json!({"name": format!("c{i}"), "image": img}))
            .collect();
        json!({"kind": "Deployment", "spec": {"template": {"spec": {
            "initContainers": [{"name": "init", "image": "busybox"}],
            "containers": containers
        }}}})
    }

    fn images(obj: &Value) -> Vec<String> {
        obj["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["image"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Applies one entry to a Deployment holding `image`; returns the new image and the warnings.
    fn run(image: &str, component: &str, operator: &str, value: Option<&str>) -> (String, Vec<String>) {
        let mut obj = deployment(&[image]);
        let mut report = Report::default();
        apply(&mut obj, &[entry(component, operator, value)], &mut report).unwrap();
        let warnings = report.warnings.into_iter().map(|w| w.message).collect();
        (images(&obj).remove(0), warnings)
    }

    fn image_after(image: &str, component: &str, operator: &str, value: Option<&str>) -> String {
        let (img, warnings) = run(image, component, operator, value);
        assert!(warnings.is_empty(), "{warnings:?}");
        img
    }

    fn fails(image: &str, component: &str, operator: &str, value: Option<&str>) -> String {
        let mut obj = deployment(&[image]);
        apply(&mut obj, &[entry(component, operator, value)], &mut Report::default())
            .unwrap_err()
            .message
    }

    #[test]
    fn seed_scenario_registry_and_tag() {
        let mut obj = deployment(&["nginx:1.17.0"]);
        let mut report = Report::default();
        apply(
            &mut obj,
            &[
                entry("Registry", "replace", Some("dc-1.registry.io")),
                entry("Tag", "add", Some("-alpine")),
            ],
            &mut report,
        )
        .unwrap();
        assert_eq!(images(&obj), ["dc-1.registry.io/nginx:1.17.0-alpine"]);
        assert_eq!(
            report.applied[0].operation,
            r#"replace /spec/template/spec/containers/0/image "nginx:1.17.0" -> "dc-1.registry.io/nginx:1.17.0""#
        );
        assert_eq!(report.applied[1].index, 1);
        // Init containers are not touched.
        assert_eq!(obj["spec"]["template"]["spec"]["initContainers"][0]["image"], "busybox");
    }

    #[test]
    fn registry_operators() {
        let img = "fictional.registry.example:10443/subpath/imagename:v1";
        // Concatenation after the port gives an invalid reference: an error, not a broken image.
        let msg = fails(img, "Registry", "add", Some("-mirror"));
        assert!(msg.contains("is not a valid image reference"), "{msg}");
        assert_eq!(
            image_after(
                "fictional.registry.example/imagename",
                "Registry",
                "add",
                Some("-mirror")
            ),
            "fictional.registry.example-mirror/imagename"
        );
        assert_eq!(
            image_after(img, "Registry", "replace", Some("registry.k8s.io")),
            "registry.k8s.io/subpath/imagename:v1"
        );
        assert_eq!(image_after(img, "Registry", "remove", None), "subpath/imagename:v1");
        assert_eq!(
            image_after("10.10.10.10:10443/a/b", "Registry", "replace", Some("r.io")),
            "r.io/a/b"
        );
        // Adding a registry to an image without one simply sets it.
        assert_eq!(
            image_after("nginx", "Registry", "add", Some("a.example")),
            "a.example/nginx"
        );
        assert_eq!(
            image_after("a.example/nginx", "Registry", "add", Some(".test")),
            "a.example.test/nginx"
        );
    }

    #[test]
    fn repository_operators() {
        let img = "fictional.registry.example:10443/imagename@".to_owned() + SHA;
        assert_eq!(
            image_after(&img, "Repository", "add", Some("/nginx")),
            format!("fictional.registry.example:10443/imagename/nginx@{SHA}")
        );
        assert_eq!(
            image_after(&img, "Repository", "replace", Some("busybox")),
            format!("fictional.registry.example:10443/busybox@{SHA}")
        );
        let msg = fails("host.io/a:v1", "Repository", "remove", None);
        assert!(msg.contains(r#"result "host.io/:v1""#), "{msg}");
    }

    #[test]
    fn tag_operators() {
        assert_eq!(
            image_after("nginx:1.17", "Tag", "add", Some("-alpine")),
            "nginx:1.17-alpine"
        );
        assert_eq!(image_after("nginx", "Tag", "add", Some("v1")), "nginx:v1");
        assert_eq!(image_after("nginx:1.17", "Tag", "replace", Some("1.19")), "nginx:1.19");
        assert_eq!(
            image_after("nginx:1.17", "Tag", "replace", Some(SHA)),
            format!("nginx@{SHA}")
        );
        assert_eq!(
            image_after(&format!("nginx@{SHA}"), "Tag", "replace", Some("v2")),
            "nginx:v2"
        );
        assert_eq!(image_after("nginx:1.17", "Tag", "remove", None), "nginx");
        assert_eq!(image_after(&format!("nginx@{SHA}"), "Tag", "remove", None), "nginx");
        // Both tag and digest: only the tag survives, even for an unrelated edit.
        assert_eq!(
            image_after(&format!("r.io/nginx:1.17@{SHA}"), "Registry", "replace", Some("m.io")),
            "m.io/nginx:1.17"
        );
    }

    #[test]
    fn invalid_tag_value_warns_and_keeps_image() {
        for value in [format!("@{SHA}"), format!("v1.0.0{SHA}"), String::from("bad tag")] {
            let (img, warnings) = run("nginx:1.17", "Tag", "replace", Some(&value));
            assert_eq!(img, "nginx:1.17");
            assert_eq!(warnings.len(), 1, "{value}");
            assert!(warnings[0].contains("neither a valid tag nor a digest"));
        }
        // Adding to a digest never yields a tag or a digest.
        let (img, warnings) = run(&format!("nginx@{SHA}"), "Tag", "add", Some("-x"));
        assert_eq!(img, format!("nginx@{SHA}"));
        assert_eq!(warnings.len(), 1);
        // A digest-shaped value of an unknown algorithm is set, then fails validation.
        let md5 = format!("md5:{}", "a".repeat(32));
        let msg = fails("nginx:1", "Tag", "replace", Some(&md5));
        assert!(msg.contains("unsupported digest algorithm"), "{msg}");
    }

    #[test]
    fn registry_without_dot_warns() {
        let (img, warnings) = run("nginx:1", "Registry", "replace", Some("myregistry"));
        assert_eq!(img, "myregistry/nginx:1");
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains(r#"repository "myregistry/nginx""#), "{warnings:?}");
    }

    #[test]
    fn every_container_and_pod_path() {
        let mut obj = deployment(&["a", "b:1"]);
        apply(
            &mut obj,
            &[entry("Registry", "add", Some("r.io"))],
            &mut Report::default(),
        )
        .unwrap();
        assert_eq!(images(&obj), ["r.io/a", "r.io/b:1"]);
        let mut pod = json!({"kind": "Pod", "spec": {"containers": [{"name": "x", "image": "a"}]}});
        apply(&mut pod, &[entry("Tag", "replace", Some("v"))], &mut Report::default()).unwrap();
        assert_eq!(pod["spec"]["containers"][0]["image"], "a:v");
    }

    #[test]
    fn other_kinds_unchanged_without_predicate() {
        let mut cron = json!({"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": {
            "containers": [{"name": "x", "image": "a"}]}}}}}});
        let before = cron.clone();
        let mut report = Report::default();
        apply(&mut cron, &[entry("Registry", "replace", Some("r.io"))], &mut report).unwrap();
        assert_eq!(cron, before);
        assert_eq!(report, Report::default());
    }

    #[test]
    fn predicate_targets_exactly_one_path() {
        let mut cron = json!({"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": {
            "containers": [{"name": "x", "image": "a"}]}}}}}});
        let mut e = entry("Registry", "replace", Some("r.io"));
        e.predicate = Some(ImagePredicate {
            path: "/spec/jobTemplate/spec/template/spec/containers/0/image".into(),
        });
        apply(&mut cron, std::slice::from_ref(&e), &mut Report::default()).unwrap();
        assert_eq!(
            cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"],
            "r.io/a"
        );

        let mut obj = deployment(&["a"]);
        e.predicate = Some(ImagePredicate {
            path: "/spec/template/spec/initContainers/0/image".into(),
        });
        apply(&mut obj, std::slice::from_ref(&e), &mut Report::default()).unwrap();
        assert_eq!(
            obj["spec"]["template"]["spec"]["initContainers"][0]["image"],
            "r.io/busybox"
        );
        assert_eq!(images(&obj), ["a"]);

        e.predicate = Some(ImagePredicate {
            path: "/spec/missing".into(),
        });
        let err = apply(&mut obj, std::slice::from_ref(&e), &mut Report::default()).unwrap_err();
        assert_eq!(err.operation, r#"Registry replace "r.io" at /spec/missing"#);
        assert_eq!(err.message, "predicate path: /spec/missing does not exist");

        e.predicate = Some(ImagePredicate {
            path: "/spec/template".into(),
        });
        let err = apply(&mut obj, &[e], &mut Report::default()).unwrap_err();
        assert_eq!(err.message, "/spec/template is an object, not an image string");
    }

    #[test]
    fn errors() {
        assert!(fails("Nginx", "Tag", "replace", Some("v")).contains("uppercase"));
        assert!(fails("nginx", "Digest", "replace", Some("v")).contains("unknown component"));
        assert!(fails("nginx", "Tag", "set", Some("v")).contains("unknown operator"));
        let mut obj = json!({"kind": "Pod", "spec": {"containers": [{"name": "x"}]}});
        let e = apply(&mut obj, &[entry("Tag", "replace", Some("v"))], &mut Report::default()).unwrap_err();
        assert_eq!(e.message, "container /spec/containers/0 has no image");
        assert_eq!(
            e.to_string(),
            r#"imageOverrider[0] Tag replace "v": container /spec/containers/0 has no image"#
        );
    }
}
