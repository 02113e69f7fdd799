//! `diff --live`: each cluster as it would be after a server-side dry-run apply, against what it holds
//! now, plus what a prune would delete.
//!
//! The server computes the prediction (defaulting, admission webhooks, field ownership), so neither side
//! carries noise the other lacks; fields only the server manages (`managedFields`, `resourceVersion`,
//! `uid`, `generation`, `creationTimestamp`) are removed from both.

use super::apply::{
    api_for, api_version_of, as_applied, display, key_of, list_members, plan_gvks, read_parent, Desired, Key, Resolver,
};
use super::applyset;
use super::Member;
use kube::api::{Patch, PatchParams};
use serde_json::Value;
use std::collections::BTreeSet;

/// One cluster's two sides: (live now, predicted after apply), objects as JSON.
#[derive(Debug, Clone, Default)]
pub struct LiveSides {
    pub live: Vec<Value>,
    pub predicted: Vec<Value>,
    /// Objects that exist unowned and would be left alone (conflictResolution Abort).
    pub conflicts: Vec<String>,
}

/// Removes what only the server manages.
pub fn normalise(mut v: Value) -> Value {
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in [
            "managedFields",
            "resourceVersion",
            "uid",
            "generation",
            "creationTimestamp",
            "selfLink",
        ] {
            meta.remove(k);
        }
        // flotilla's bookkeeping, not content: it changes whenever anything else does.
        if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            a.remove(super::unchanged::ANNOTATION_APPLIED);
            if a.is_empty() {
                meta.remove("annotations");
            }
        }
    }
    v
}

/// Computes both sides for one cluster.
pub async fn live_sides(member: &Member, desired: &[Desired], parent: &str) -> Result<LiveSides, String> {
    let client = &member.client;
    let id = applyset::applyset_id(parent);
    let state = read_parent(client, parent)
        .await
        .map_err(|e| super::apply::describe(&e))?;
    let mut resolver = Resolver::new(client.clone());
    let gvks = plan_gvks(client, desired, &state).await?;
    let members = list_members(&mut resolver, &gvks, &id, &|_, _| false).await?;
    let mut sides = LiveSides::default();
    let wanted: BTreeSet<Key> = desired.iter().map(|d| key_of(&d.obj)).collect();
    let pp = PatchParams {
        dry_run: true,
        ..PatchParams::apply(applyset::FIELD_MANAGER).force()
    };
    for d in desired {
        let k = key_of(&d.obj);
        let api_version = d.obj["apiVersion"].as_str().unwrap_or("");
        let (ar, caps) = resolver.resolve(api_version, &k.1).await?;
        let api = api_for(client, &ar, &caps, &k.2);
        let live = api.get_opt(&k.3).await.map_err(|e| super::apply::describe(&e))?;
        let live = live.map(|o| normalise(serde_json::to_value(o).unwrap_or(Value::Null)));
        if live.is_some() && !members.contains_key(&k) && !d.overwrite {
            sides.conflicts.push(display(&k));
            if let Some(l) = live {
                sides.live.push(l.clone());
                sides.predicted.push(l);
            }
            continue;
        }
        let obj = as_applied(&d.obj, &id);
        let predicted = api.patch(&k.3, &pp, &Patch::Apply(&obj)).await.map_err(|e| {
            format!(
                "{}: server-side dry run refused: {}",
                display(&k),
                super::apply::describe(&e)
            )
        })?;
        sides
            .predicted
            .push(normalise(serde_json::to_value(predicted).unwrap_or(Value::Null)));
        if let Some(l) = live {
            sides.live.push(l);
        }
    }
    for k in members.keys().filter(|k| !wanted.contains(k)) {
        let api_version = api_version_of(&gvks, k);
        let (ar, caps) = resolver.resolve(&api_version, &k.1).await?;
        if let Ok(Some(o)) = api_for(client, &ar, &caps, &k.2).get_opt(&k.3).await {
            sides
                .live
                .push(normalise(serde_json::to_value(o).unwrap_or(Value::Null)));
        }
    }
    Ok(sides)
}
