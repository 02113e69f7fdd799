//! Where the workload kinds keep their containers, as Karmada's image/command/args overriders see them.

use crate::model::type_name;
use serde_json::Value;

/// The pointer to `containers` for the kinds Karmada's default overriders know (by `kind` only, any group):
/// `Pod` → `/spec/containers`; `ReplicaSet`, `Deployment`, `DaemonSet`, `StatefulSet`, `Job` →
/// `/spec/template/spec/containers`. Init and ephemeral containers are never targeted.
pub(crate) fn containers_path(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some("/spec/containers"),
        "ReplicaSet" | "Deployment" | "DaemonSet" | "StatefulSet" | "Job" => Some("/spec/template/spec/containers"),
        _ => None,
    }
}

/// The object's `containers` list and its pointer: `Ok(None)` when the kind has no default containers or the
/// list is absent (nothing to override, as in Karmada); an error when something on the way has the wrong type.
pub(crate) fn containers_mut(obj: &mut Value) -> Result<Option<(&'static str, &mut Vec<Value>)>, String> {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let Some(path) = containers_path(kind) else {
        return Ok(None);
    };
    let mut cur = obj;
    let mut walked = String::new();
    for token in path.split('/').skip(1) {
        let here_type = type_name(cur);
        let Value::Object(map) = cur else {
            return Err(format!("{} is {here_type}, expected an object", at(&walked)));
        };
        walked.push('/');
        walked.push_str(token);
        match map.get_mut(token) {
            Some(Value::Null) | None => return Ok(None),
            Some(next) => cur = next,
        }
    }
    let found = type_name(cur);
    match cur {
        Value::Array(items) => Ok(Some((path, items))),
        _ => Err(format!("{path} is {found}, expected an array of containers")),
    }
}

fn at(pointer: &str) -> &str {
    if pointer.is_empty() {
        "the object"
    } else {
        pointer
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds() {
        assert_eq!(containers_path("Pod"), Some("/spec/containers"));
        for k in ["ReplicaSet", "Deployment", "DaemonSet", "StatefulSet", "Job"] {
            assert_eq!(containers_path(k), Some("/spec/template/spec/containers"));
        }
        for k in ["CronJob", "Service", "deployment", ""] {
            assert_eq!(containers_path(k), None);
        }
    }

    #[test]
    fn lookup() {
        let mut pod = json!({"kind": "Pod", "spec": {"containers": [{"name": "a"}]}});
        let (path, items) = containers_mut(&mut pod).unwrap().unwrap();
        assert_eq!(path, "/spec/containers");
        assert_eq!(items.len(), 1);

        let mut no_template = json!({"kind": "Deployment", "spec": {}});
        assert!(containers_mut(&mut no_template).unwrap().is_none());

        let mut svc = json!({"kind": "Service", "spec": {"containers": 3}});
        assert!(containers_mut(&mut svc).unwrap().is_none());

        let mut bad = json!({"kind": "Deployment", "spec": {"template": "x"}});
        assert_eq!(
            containers_mut(&mut bad).unwrap_err(),
            "/spec/template is a string, expected an object"
        );
        let mut bad = json!({"kind": "Pod", "spec": {"containers": {}}});
        assert_eq!(
            containers_mut(&mut bad).unwrap_err(),
            "/spec/containers is an object, expected an array of containers"
        );
    }
}
