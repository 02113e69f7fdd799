//! Schema checks of every kind in policy-schemas/: valid examples pass, mistakes are found with
//! the right pointer and a helpful message.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use render::schema::{check, SchemaFinding, SchemaKind};
use serde_json::Value;

fn doc(yaml: &str) -> Value {
    match serde_yaml::from_str(yaml) {
        Ok(v) => v,
        Err(e) => panic!("test YAML does not parse: {e}\n{yaml}"),
    }
}

/// The findings for a YAML document, its kind taken from its apiVersion and kind.
fn findings(yaml: &str) -> Vec<SchemaFinding> {
    let value = doc(yaml);
    let api_version = value["apiVersion"].as_str().unwrap_or_default();
    let kind = value["kind"].as_str().unwrap_or_default();
    let Some(schema) = SchemaKind::for_document(api_version, kind) else {
        panic!("no schema for {api_version} {kind}")
    };
    check(schema, &value)
}

#[track_caller]
fn assert_valid(yaml: &str) {
    let found = findings(yaml);
    assert!(found.is_empty(), "expected no findings, got {found:#?}\n{yaml}");
}

/// Asserts exactly these `(pointer, message)` findings.
#[track_caller]
fn assert_findings(yaml: &str, expected: &[(&str, &str)]) {
    let found = findings(yaml);
    let got: Vec<(&str, &str)> = found.iter().map(|f| (f.pointer.as_str(), f.message.as_str())).collect();
    assert_eq!(got, expected, "\n{yaml}");
}

/// A PropagationPolicy whose `placement` is the given YAML (indented by four spaces).
fn pp_with_placement(placement: &str) -> String {
    format!(
        "apiVersion: policy.karmada.io/v1alpha1
kind: PropagationPolicy
metadata: {{name: p, namespace: default}}
spec:
  resourceSelectors: [{{apiVersion: apps/v1, kind: Deployment}}]
  placement:
{placement}"
    )
}

// ---------------------------------------------------------------------------------------------
// Valid examples

#[test]
fn karmada_documented_propagation_policies_are_valid() {
    // Karmada's "resource propagating" guide.
    assert_valid(
        "
apiVersion: policy.karmada.io/v1alpha1
kind: PropagationPolicy
metadata:
  name: example-policy # The default namespace is `default`.
spec:
  resourceSelectors:
    - apiVersion: apps/v1
      kind: Deployment
      name: nginx # If no namespace is specified, the namespace is inherited from the parent object scope.
  placement:
    clusterAffinity:
      clusterNames:
        - member1
",
    );
    // Karmada's field selector, tolerations, spread and static weight examples, combined.
    assert_valid(
        "
apiVersion: policy.karmada.io/v1alpha1
kind: PropagationPolicy
metadata:
  name: nginx-propagation
  namespace: shop
  labels: {app.kubernetes.io/part-of: shop}
spec:
  priority: 10
  preemption: Never
  conflictResolution: Overwrite
  propagateDeps: true
  resourceSelectors:
    - apiVersion: apps/v1
      kind: Deployment
      labelSelector:
        matchLabels: {app: nginx}
        matchExpressions:
          - {key: tier, operator: In, values: [web, api]}
          - {key: canary, operator: DoesNotExist}
  placement:
    clusterAffinity:
      fieldSelector:
        matchExpressions:
          - key: provider
            operator: In
            values:
              - huaweicloud
          - key: region
            operator: NotIn
            values:
              - cn-south-1
      exclude: [member3]
    clusterTolerations:
      - key: cluster.karmada.io/not-ready
        operator: Exists
        effect: NoExecute
        tolerationSeconds: 300
      - {key: dedicated, operator: Equal, value: shop, effect: NoSchedule}
    spreadConstraints:
      - spreadByField: region
        maxGroups: 2
        minGroups: 2
      - spreadByField: cluster
        maxGroups: 4
        minGroups: 4
    replicaScheduling:
      replicaDivisionPreference: Weighted
      replicaSchedulingType: Divided
      weightPreference:
        staticWeightList:
          - targetCluster:
              clusterNames:
                - member1
            weight: 1
          - targetCluster:
              labelSelector: {matchLabels: {tier: big}}
            weight: 2
  failover:
    application:
      decisionConditions: {tolerationSeconds: 120}
      purgeMode: Gracefully
      gracePeriodSeconds: 600
  suspension: {dispatchingOnClusters: {clusterNames: [member2]}}
  preserveResourcesOnDeletion: false
  dependentOverrides: [nginx-override]
  schedulerName: default-scheduler
  activationPreference: Lazy
  schedulePriority: {priorityClassSource: KubePriorityClass, priorityClassName: high}
",
    );
}

#[test]
fn seed_scenario_and_failover_policies_are_valid() {
    // SPEC §9.1: spread every Deployment labelled ha-mode: multi-zone-replication.
    assert_valid(
        "
apiVersion: policy.karmada.io/v1alpha1
kind: PropagationPolicy
metadata:
  name: nginx-propagation
spec:
  resourceSelectors:
    - apiVersion: apps/v1
      kind: Deployment
      labelSelector:
        matchLabels:
          ha-mode: multi-zone-replication
  placement:
    spreadConstraints:
      - spreadByField: region
        maxGroups: 2
        minGroups: 1
      - spreadByField: cluster
        maxGroups: 3
        minGroups: 2
",
    );
    // SPEC §9.3 and Karmada's clusterAffinities guide; dynamic weights; an empty replicaScheduling.
    assert_valid(
        "
apiVersion: policy.karmada.io/v1alpha1
kind: ClusterPropagationPolicy
metadata:
  name: failover
spec:
  resourceSelectors:
    - {apiVersion: apps/v1, kind: Deployment, namespace: shop, name: web}
    - {apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRole, labelSelector: {}}
  placement:
    clusterAffinities:
      - affinityName: local-clusters
        clusterNames:
          - local1
          - local2
      - affinityName: cloud-clusters
        fieldSelector:
          matchExpressions: [{key: zone, operator: In, values: [eu-1a]}]
    replicaScheduling:
      replicaSchedulingType: Divided
      replicaDivisionPreference: Weighted
      weightPreference: {dynamicWeight: AvailableReplicas}
",
    );
    assert_valid(&pp_with_placement(
        "    replicaScheduling: {}\n    spreadConstraints: [{spreadByLabel: rack}]\n",
    ));
}

#[test]
fn karmada_documented_override_policies_are_valid() {
    assert_valid(
        r#"
apiVersion: policy.karmada.io/v1alpha1
kind: OverridePolicy
metadata:
  name: example
  namespace: default
spec:
  resourceSelectors:
    - apiVersion: apps/v1
      kind: Deployment
      name: myapp
  overrideRules:
    - targetCluster:
        clusterNames:
          - member1
      overriders:
        imageOverrider:
          - component: Registry
            operator: replace
            value: test-repo
        commandOverrider:
          - containerName: myapp
            operator: add
            value: [--cluster=member1]
        argsOverrider:
          - {containerName: myapp, operator: remove, value: [--verbose]}
        labelsOverrider:
          - operator: add
            value:
              env: skoala-dev
        annotationsOverrider:
          - operator: remove
            value: {foo: ""}
        plaintext:
          - path: /spec/replicas
            operator: replace
            value: 3
          - path: /metadata/annotations/note
            operator: add
            value: {nested: [1, "two", null]}
          - {path: /spec/template/spec/priorityClassName, operator: remove}
    - targetCluster:
        labelSelector: {matchLabels: {failuredomain.kubernetes.io/region: dc1}}
      overriders:
        imageOverrider:
          - predicate: {path: /spec/template/spec/initContainers/0/image}
            component: Tag
            operator: replace
            value: 1.17.0-alpine
        fieldOverrider:
          - fieldPath: /data/db-config.yaml
            yaml:
              - subPath: /database/host
                operator: replace
                value: "remote-db.example.com"
              - subPath: /database/port
                operator: replace
                value: "3306"
          - fieldPath: /data/settings.json
            json:
              - {subPath: /debug, operator: remove}
"#,
    );
    // A ClusterOverridePolicy without selectors applies to everything in scope.
    assert_valid(
        "
apiVersion: policy.karmada.io/v1alpha1
kind: ClusterOverridePolicy
metadata: {name: registry-mirror}
spec:
  overrideRules:
    - overriders:
        imageOverrider: [{component: Registry, operator: replace, value: mirror.example.com}]
",
    );
}

#[test]
fn deprecated_single_rule_override_form_is_accepted() {
    assert_valid(
        "
apiVersion: policy.karmada.io/v1alpha1
kind: OverridePolicy
metadata: {name: legacy, namespace: default}
spec:
  resourceSelectors: [{apiVersion: apps/v1, kind: Deployment, name: nginx}]
  targetCluster:
    clusterNames: [member1]
  overriders:
    plaintext:
      - path: /spec/replicas
        operator: replace
        value: 2
",
    );
    // Karmada writes `overriders: {}` next to overrideRules when it serialises; that is fine.
    assert_valid(
        "
apiVersion: policy.karmada.io/v1alpha1
kind: ClusterOverridePolicy
metadata: {name: mixed-empty}
spec:
  overriders: {}
  overrideRules: [{overriders: {plaintext: [{path: /a, operator: remove}]}}]
",
    );
}

#[test]
fn clusters_in_both_formats_are_valid() {
    // SPEC §3.1, verbatim.
    assert_valid(
        "
apiVersion: flotilla.dev/v1alpha1
kind: Cluster
metadata:
  name: dc1-a
  labels: {failuredomain.kubernetes.io/region: dc1}
spec:
  provider: onprem          # these five fields mean exactly what they mean in Karmada's Cluster
  region: dc1
  zones: [dc1-z1]
  taints: []
  kubeconfigContext: dc1-a  # which context of the kubeconfig reaches it (default: the cluster's name)
  network: dc1              # clusters on one network reach each other's pod IPs (default: \"default\")
  eastWestGateway:          # how other networks reach services of this cluster (island networks)
    address: 192.0.2.10
    portRange: 31000-31999
  capacity: {availableReplicas: 200}   # optional hint for dynamic weights and Aggregated when offline
",
    );
    assert_valid("apiVersion: flotilla.dev/v1alpha1\nkind: Cluster\nmetadata: {name: minimal}\n");
    // What `kubectl get cluster member1 -o yaml` prints on a Karmada control plane.
    assert_valid(
        "
apiVersion: cluster.karmada.io/v1alpha1
kind: Cluster
metadata:
  creationTimestamp: \"2025-01-10T08:00:00Z\"
  finalizers:
    - karmada.io/cluster-controller
  generation: 3
  labels:
    failuredomain.kubernetes.io/region: dc-1
  name: member1
  resourceVersion: \"12345\"
  uid: 7c1a4f0e-8a8e-4b63-9a53-7f2c1f0f3e11
spec:
  apiEndpoint: https://172.18.0.3:6443
  id: 5d3a2f6b-1c1e-4d0a-9f3e-1b2c3d4e5f60
  impersonatorSecretRef:
    name: member1-impersonator
    namespace: karmada-cluster
  insecureSkipTLSVerification: false
  provider: huaweicloud
  region: cn-south-1
  zones: [cn-south-1a, cn-south-1b]
  proxyURL: socks5://proxy.example.com:1080
  proxyHeader: {Proxy-Authorization: Basic abc}
  secretRef:
    name: member1
    namespace: karmada-cluster
  syncMode: Push
  taints:
    - key: cluster.karmada.io/not-ready
      effect: NoSchedule
      timeAdded: \"2025-01-10T08:01:00Z\"
  resourceModels:
    - grade: 0
      ranges:
        - {name: cpu, min: \"0\", max: \"1\"}
        - {name: memory, min: \"0\", max: 4Gi}
    - grade: 1
      ranges:
        - {name: cpu, min: 1, max: 2}
        - {name: memory, min: 4Gi, max: 16Gi}
status:
  kubernetesVersion: v1.31.0
  apiEnablements:
    - groupVersion: apps/v1
      resources: [{kind: Deployment, name: deployments}]
  conditions:
    - {type: Ready, status: \"True\", reason: ClusterReady, lastTransitionTime: \"2025-01-10T08:00:00Z\", message: ok}
",
    );
}

#[test]
fn global_traffic_policy_and_repo_config_are_valid() {
    // SPEC §7, verbatim.
    assert_valid(
        "
apiVersion: flotilla.dev/v1alpha1
kind: GlobalTrafficPolicy
metadata: {name: payments, namespace: shop}   # same name as the Service
spec:
  mode: FailOver            # Locality | FailOver | ActiveActive (default Locality)
  targets:                  # optional: order (FailOver) and weights (ActiveActive), default all placed clusters
    - {cluster: eu-1, weight: 100}
    - {cluster: us-1, weight: 50}
",
    );
    assert_valid(
        "
apiVersion: flotilla.dev/v1alpha1
kind: RepoConfig
metadata: {name: flotilla}
spec:
  include: ['apps/**', 'clusters/*.yaml']
  exclude: ['**/kustomization.yaml', 'drafts/**']
  skippedNamespaces: ['kube-*', scratch]
  propagateNamespaces: [kube-public]
  vipRange: 127.200.0.0/16
  pruneGuard: 30
  drift:
    mode: report
    ignore:
      - {group: apps, kind: Deployment, jsonPointers: [/spec/replicas]}
      - {kind: ConfigMap, jsonPointers: ['/data/generated~1value']}
  maxFileSize: 1048576
",
    );
    assert_valid("apiVersion: flotilla.dev/v1alpha1\nkind: RepoConfig\n");
}

// ---------------------------------------------------------------------------------------------
// Unknown fields

#[test]
fn seed_slide_maximum_and_minimum_point_at_the_key_with_a_hint() {
    let yaml = pp_with_placement(
        "    spreadConstraints:\n      - spreadByField: region\n        maximum: 2\n        minimum: 1\n",
    );
    let found = findings(&yaml);
    assert_eq!(
        found,
        vec![
            SchemaFinding {
                pointer: "/spec/placement/spreadConstraints/0/maximum".into(),
                message: "unknown field `maximum` in spec.placement.spreadConstraints[0]; did you mean `maxGroups`?"
                    .into(),
                unknown_field: true,
            },
            SchemaFinding {
                pointer: "/spec/placement/spreadConstraints/0/minimum".into(),
                message: "unknown field `minimum` in spec.placement.spreadConstraints[0]; did you mean `minGroups`?"
                    .into(),
                unknown_field: true,
            },
        ]
    );
}

#[test]
fn typos_get_the_nearest_allowed_field() {
    assert_findings(
        &pp_with_placement("    clusterAfinity: {clusterNames: [a]}\n    replicaScheduling: {replicaSchedulingTyp: Divided}\n    spreadConstraints: [{MaxGroups: 1, spreadbyfield: zone}]\n"),
        &[
            (
                "/spec/placement/clusterAfinity",
                "unknown field `clusterAfinity` in spec.placement; did you mean `clusterAffinity`?",
            ),
            (
                "/spec/placement/replicaScheduling/replicaSchedulingTyp",
                "unknown field `replicaSchedulingTyp` in spec.placement.replicaScheduling; did you mean `replicaSchedulingType`?",
            ),
            (
                "/spec/placement/spreadConstraints/0/MaxGroups",
                "unknown field `MaxGroups` in spec.placement.spreadConstraints[0]; did you mean `maxGroups`?",
            ),
            (
                "/spec/placement/spreadConstraints/0/spreadbyfield",
                "unknown field `spreadbyfield` in spec.placement.spreadConstraints[0]; did you mean `spreadByField`?",
            ),
        ],
    );
}

#[test]
fn a_field_one_level_too_high_is_pointed_to_its_parent() {
    assert_findings(
        &pp_with_placement("    clusterNames: [member1]\n"),
        &[(
            "/spec/placement/clusterNames",
            "unknown field `clusterNames` in spec.placement; did you mean `clusterAffinity.clusterNames`?",
        )],
    );
    assert_findings(
        &pp_with_placement("    clusterAffinity: {matchLabels: {a: b}}\n"),
        &[(
            "/spec/placement/clusterAffinity/matchLabels",
            "unknown field `matchLabels` in spec.placement.clusterAffinity; did you mean `labelSelector.matchLabels`?",
        )],
    );
}

#[test]
fn unknown_fields_without_a_near_name_get_no_hint() {
    assert_findings(
        "apiVersion: flotilla.dev/v1alpha1\nkind: Cluster\nmetadata: {name: c1}\nspec: {colour: blue}\nspecs: {}\n",
        &[
            ("/spec/colour", "unknown field `colour` in spec"),
            ("/specs", "unknown field `specs` at the top level; did you mean `spec`?"),
        ],
    );
}

#[test]
fn unknown_field_pointers_escape_slashes_and_tildes() {
    let found = findings("apiVersion: flotilla.dev/v1alpha1\nkind: Cluster\nmetadata: {name: c1}\nspec: {a/b~c: 1}\n");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].pointer, "/spec/a~1b~0c");
    assert!(found[0].unknown_field);
}

#[test]
fn cluster_scoped_kinds_have_no_namespace() {
    let found = findings(
        "apiVersion: policy.karmada.io/v1alpha1\nkind: ClusterPropagationPolicy\nmetadata: {name: p, namespace: default}\nspec: {resourceSelectors: [{apiVersion: v1, kind: ConfigMap}]}\n",
    );
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].pointer, "/metadata/namespace");
    assert!(found[0].unknown_field);
}

// ---------------------------------------------------------------------------------------------
// Enums, types, ranges and required fields

#[test]
fn wrong_enum_values_list_the_allowed_ones() {
    assert_findings(
        &pp_with_placement("    replicaScheduling: {replicaSchedulingType: Divide, replicaDivisionPreference: Weighed, weightPreference: {dynamicWeight: Available}}\n"),
        &[
            (
                "/spec/placement/replicaScheduling/replicaDivisionPreference",
                "spec.placement.replicaScheduling.replicaDivisionPreference: \"Weighed\" is not one of Aggregated, Weighted; did you mean `Weighted`?",
            ),
            (
                "/spec/placement/replicaScheduling/replicaSchedulingType",
                "spec.placement.replicaScheduling.replicaSchedulingType: \"Divide\" is not one of Duplicated, Divided; did you mean `Divided`?",
            ),
            (
                "/spec/placement/replicaScheduling/weightPreference/dynamicWeight",
                "spec.placement.replicaScheduling.weightPreference.dynamicWeight: \"Available\" is not one of AvailableReplicas",
            ),
        ],
    );
    assert_findings(
        "apiVersion: flotilla.dev/v1alpha1\nkind: GlobalTrafficPolicy\nmetadata: {name: payments, namespace: shop}\nspec: {mode: Failover}\n",
        &[("/spec/mode", "spec.mode: \"Failover\" is not one of Locality, FailOver, ActiveActive; did you mean `FailOver`?")],
    );
}

#[test]
fn karmada_enums_are_enforced() {
    let yaml = "
apiVersion: policy.karmada.io/v1alpha1
kind: OverridePolicy
metadata: {name: o, namespace: default}
spec:
  overrideRules:
    - overriders:
        imageOverrider: [{component: Image, operator: replace, value: x}]
        commandOverrider: [{containerName: c, operator: replace, value: [x]}]
        plaintext: [{path: /a, operator: move}]
";
    let pointers: Vec<String> = findings(yaml).into_iter().map(|f| f.pointer).collect();
    assert_eq!(
        pointers,
        [
            "/spec/overrideRules/0/overriders/commandOverrider/0/operator",
            "/spec/overrideRules/0/overriders/imageOverrider/0/component",
            "/spec/overrideRules/0/overriders/plaintext/0/operator",
        ]
    );
    let pp = "
apiVersion: policy.karmada.io/v1alpha1
kind: PropagationPolicy
metadata: {name: p}
spec:
  conflictResolution: Replace
  preemption: Sometimes
  resourceSelectors: [{apiVersion: v1, kind: ConfigMap}]
  placement:
    clusterTolerations: [{key: a, operator: Lt, value: \"3\"}]
    spreadConstraints: [{spreadByField: rack}]
";
    let pointers: Vec<String> = findings(pp).into_iter().map(|f| f.pointer).collect();
    assert_eq!(
        pointers,
        [
            "/spec/conflictResolution",
            "/spec/placement/clusterTolerations/0/operator",
            "/spec/placement/spreadConstraints/0/spreadByField",
            "/spec/preemption",
        ]
    );
}

#[test]
fn field_selector_accepts_only_provider_region_zone_with_in_and_not_in() {
    let yaml = pp_with_placement(
        "    clusterAffinity:\n      fieldSelector:\n        matchExpressions:\n          - {key: foo, operator: In, values: [x]}\n          - {key: region, operator: Exists, values: [x]}\n",
    );
    assert_findings(
        &yaml,
        &[
            (
                "/spec/placement/clusterAffinity/fieldSelector/matchExpressions/0/key",
                "spec.placement.clusterAffinity.fieldSelector.matchExpressions[0].key: \"foo\" is not one of provider, region, zone",
            ),
            (
                "/spec/placement/clusterAffinity/fieldSelector/matchExpressions/1/operator",
                "spec.placement.clusterAffinity.fieldSelector.matchExpressions[1].operator: \"Exists\" is not one of In, NotIn",
            ),
        ],
    );
}

#[test]
fn wrong_types_say_what_was_expected_and_found() {
    assert_findings(
        &pp_with_placement("    spreadConstraints: [{spreadByField: cluster, maxGroups: \"2\"}]\n    clusterAffinity: {clusterNames: member1}\n"),
        &[
            (
                "/spec/placement/clusterAffinity/clusterNames",
                "spec.placement.clusterAffinity.clusterNames: expected an array, found the string \"member1\"",
            ),
            (
                "/spec/placement/spreadConstraints/0/maxGroups",
                "spec.placement.spreadConstraints[0].maxGroups: expected an integer, found the string \"2\"",
            ),
        ],
    );
    assert_findings(
        "apiVersion: flotilla.dev/v1alpha1\nkind: Cluster\nmetadata: {name: c1, labels: {example.com/tier: 1}}\n",
        &[(
            "/metadata/labels/example.com~1tier",
            "metadata.labels[\"example.com/tier\"]: expected a string, found the number 1",
        )],
    );
}

#[test]
fn minimums_are_enforced() {
    assert_findings(
        &pp_with_placement(
            "    spreadConstraints: [{spreadByField: cluster, minGroups: -1}]\n    replicaScheduling:\n      weightPreference:\n        staticWeightList: [{targetCluster: {clusterNames: [a]}, weight: 0}]\n",
        ),
        &[
            (
                "/spec/placement/replicaScheduling/weightPreference/staticWeightList/0/weight",
                "spec.placement.replicaScheduling.weightPreference.staticWeightList[0].weight: must be at least 1, found 0",
            ),
            ("/spec/placement/spreadConstraints/0/minGroups", "spec.placement.spreadConstraints[0].minGroups: must be at least 0, found -1"),
        ],
    );
}

#[test]
fn required_fields_are_reported_on_their_parent() {
    assert_findings(
        "apiVersion: policy.karmada.io/v1alpha1\nkind: PropagationPolicy\nmetadata: {namespace: default}\nspec: {}\n",
        &[
            ("/metadata", "metadata: missing required field `name`"),
            ("/spec", "spec: missing required field `resourceSelectors`"),
        ],
    );
    assert_findings(
        "apiVersion: policy.karmada.io/v1alpha1\nkind: PropagationPolicy\nmetadata: {name: p}\nspec: {resourceSelectors: []}\n",
        &[("/spec/resourceSelectors", "spec.resourceSelectors: must have at least 1 item")],
    );
    assert_findings(
        "apiVersion: policy.karmada.io/v1alpha1\nkind: ClusterOverridePolicy\nmetadata: {name: o}\nspec:\n  resourceSelectors: [{kind: Deployment}]\n  overrideRules: [{overriders: {plaintext: [{operator: add, value: 1}]}}]\n",
        &[
            ("/spec/overrideRules/0/overriders/plaintext/0", "spec.overrideRules[0].overriders.plaintext[0]: missing required field `path`"),
            ("/spec/resourceSelectors/0", "spec.resourceSelectors[0]: missing required field `apiVersion`"),
        ],
    );
    assert_findings(
        "kind: PropagationPolicy\napiVersion: policy.karmada.io/v1alpha1\n",
        &[
            ("", "missing required field `metadata`"),
            ("", "missing required field `spec`"),
        ],
    );
}

#[test]
fn not_a_mapping_at_all() {
    let found = check(SchemaKind::RepoConfig, &Value::String("oops".into()));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].pointer, "");
    assert_eq!(found[0].message, "expected an object, found the string \"oops\"");
}

// ---------------------------------------------------------------------------------------------
// Karmada's validation rules that a schema can express

#[test]
fn cross_field_rules_owned_by_the_policy_checks_are_not_schema_findings() {
    // render's policy checks report these with their own codes and pointers; the schema stays quiet
    // so that each mistake is reported once.
    assert_valid(&pp_with_placement(
        "    clusterAffinity: {clusterNames: [a]}
    clusterAffinities: [{affinityName: primary, clusterNames: [a]}]
    spreadConstraints: [{spreadByField: region, spreadByLabel: rack, minGroups: 3, maxGroups: 2}]
    replicaScheduling:
      weightPreference:
        staticWeightList: [{targetCluster: {labelSelector: {matchExpressions: [{key: a, operator: In}]}}, weight: 1}]
",
    ));
    assert_valid(
        "
apiVersion: policy.karmada.io/v1alpha1
kind: OverridePolicy
metadata: {name: o, namespace: default}
spec:
  targetCluster: {clusterNames: [a]}
  overriders: {plaintext: [{path: /a, operator: remove}]}
  overrideRules: [{overriders: {}}]
",
    );
}

#[test]
fn suspension_rule() {
    assert_findings(
        "
apiVersion: policy.karmada.io/v1alpha1
kind: ClusterPropagationPolicy
metadata: {name: p}
spec:
  resourceSelectors: [{apiVersion: v1, kind: Namespace}]
  suspension: {dispatching: true, dispatchingOnClusters: {clusterNames: [a]}}
",
        &[(
            "/spec/suspension",
            "spec.suspension: dispatching: true cannot be combined with dispatchingOnClusters.clusterNames",
        )],
    );
    assert_valid(
        "
apiVersion: policy.karmada.io/v1alpha1
kind: ClusterPropagationPolicy
metadata: {name: p}
spec:
  resourceSelectors: [{apiVersion: v1, kind: Namespace}]
  suspension: {dispatching: false, dispatchingOnClusters: {clusterNames: [a]}}
",
    );
}

#[test]
fn field_overrider_and_patch_operation_rules() {
    assert_findings(
        "
apiVersion: policy.karmada.io/v1alpha1
kind: ClusterOverridePolicy
metadata: {name: o}
spec:
  overrideRules:
    - overriders:
        fieldOverrider:
          - fieldPath: data/x
            json: [{subPath: /a, operator: remove, value: 1}]
            yaml: [{subPath: /b, operator: add}]
",
        &[
            (
                "/spec/overrideRules/0/overriders/fieldOverrider/0",
                "spec.overrideRules[0].overriders.fieldOverrider[0]: json and yaml cannot both be set in one fieldOverrider",
            ),
            (
                "/spec/overrideRules/0/overriders/fieldOverrider/0/fieldPath",
                "spec.overrideRules[0].overriders.fieldOverrider[0].fieldPath: \"data/x\" must be a JSON pointer (RFC 6901) such as `/spec/replicas`",
            ),
            (
                "/spec/overrideRules/0/overriders/fieldOverrider/0/json/0",
                "spec.overrideRules[0].overriders.fieldOverrider[0].json[0]: `value` is not allowed for the remove operation",
            ),
            (
                "/spec/overrideRules/0/overriders/fieldOverrider/0/yaml/0",
                "spec.overrideRules[0].overriders.fieldOverrider[0].yaml[0]: `value` is required for the add and replace operations",
            ),
        ],
    );
}

#[test]
fn labels_overrider_values_are_checked_as_labels() {
    assert_findings(
        "
apiVersion: policy.karmada.io/v1alpha1
kind: ClusterOverridePolicy
metadata: {name: o}
spec:
  overrideRules:
    - overriders:
        labelsOverrider: [{operator: add, value: {team: has space, example.com/ok: yes-ok}}]
        annotationsOverrider: [{operator: add, value: {note: has space, 'bad key': x}}]
",
        &[
            (
                "/spec/overrideRules/0/overriders/annotationsOverrider/0/value/bad key",
                "spec.overrideRules[0].overriders.annotationsOverrider[0].value: key `bad key` must be a qualified name such as `app` or `example.com/app`",
            ),
            (
                "/spec/overrideRules/0/overriders/labelsOverrider/0/value/team",
                "spec.overrideRules[0].overriders.labelsOverrider[0].value.team: \"has space\" must be a valid label value: at most 63 characters of A-Z, a-z, 0-9, '-', '_' and '.', starting and ending with a letter or digit",
            ),
        ],
    );
}

#[test]
fn preemption_always_needs_named_selectors_and_app_failover_needs_deps() {
    assert_findings(
        "
apiVersion: policy.karmada.io/v1alpha1
kind: PropagationPolicy
metadata: {name: p}
spec:
  preemption: Always
  resourceSelectors: [{apiVersion: apps/v1, kind: Deployment, name: a}, {apiVersion: apps/v1, kind: Deployment}]
  failover: {application: {decisionConditions: {}}}
",
        &[
            (
                "/spec",
                "spec: propagateDeps must be true when failover.application is set",
            ),
            (
                "/spec/resourceSelectors/1",
                "spec.resourceSelectors[1]: every resource selector needs a `name` when preemption is Always",
            ),
        ],
    );
}

#[test]
fn cluster_inventory_rules() {
    assert_findings(
        "
apiVersion: flotilla.dev/v1alpha1
kind: Cluster
metadata: {name: Dc1_A}
spec:
  eastWestGateway: {address: gw.example.com, portRange: '31000'}
  capacity: {availableReplicas: -1}
  taints: [{key: a, effect: NoSchedul}]
",
        &[
            ("/metadata/name", "metadata.name: \"Dc1_A\" must be a lowercase RFC 1123 label: a-z, 0-9 and '-', starting and ending with a letter or digit"),
            ("/spec/capacity/availableReplicas", "spec.capacity.availableReplicas: must be at least 0, found -1"),
            ("/spec/eastWestGateway/address", "spec.eastWestGateway.address: \"gw.example.com\" must be an IPv4 address such as 192.0.2.10"),
            (
                "/spec/eastWestGateway/portRange",
                "spec.eastWestGateway.portRange: \"31000\" must be a port range `FIRST-LAST` with ports 1-65535, e.g. 31000-31999",
            ),
            (
                "/spec/taints/0/effect",
                "spec.taints[0].effect: \"NoSchedul\" is not one of NoSchedule, PreferNoSchedule, NoExecute; did you mean `NoSchedule`?",
            ),
        ],
    );
    assert_findings(
        "apiVersion: cluster.karmada.io/v1alpha1\nkind: Cluster\nmetadata: {name: m1}\nspec: {zone: a, zones: [b]}\n",
        &[
            ("/spec", "spec: missing required field `syncMode`"),
            ("/spec", "spec: zone and zones cannot both be set"),
        ],
    );
}

#[test]
fn repo_config_rules() {
    assert_findings(
        "
apiVersion: flotilla.dev/v1alpha1
kind: RepoConfig
spec:
  vipRange: 10.0.0.0/33
  pruneGuard: 150
  drift: {mode: fix, ignore: [{kind: Deployment, jsonPointers: [spec/replicas]}]}
  maxFileSize: 0
  exclude: drafts/**
",
        &[
            ("/spec/drift/ignore/0/jsonPointers/0", "spec.drift.ignore[0].jsonPointers[0]: \"spec/replicas\" must be a JSON pointer (RFC 6901) such as `/spec/replicas`"),
            ("/spec/drift/mode", "spec.drift.mode: \"fix\" is not one of heal, report"),
            ("/spec/exclude", "spec.exclude: expected an array, found the string \"drafts/**\""),
            ("/spec/maxFileSize", "spec.maxFileSize: must be at least 1, found 0"),
            ("/spec/pruneGuard", "spec.pruneGuard: must be at most 100, found 150"),
            ("/spec/vipRange", "spec.vipRange: \"10.0.0.0/33\" must be an IPv4 CIDR such as 127.200.0.0/16"),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// API behaviour

#[test]
fn kinds_are_chosen_by_api_version_and_kind() {
    let cases = [
        (
            "policy.karmada.io/v1alpha1",
            "PropagationPolicy",
            Some(SchemaKind::PropagationPolicy),
        ),
        (
            "policy.karmada.io/v1alpha1",
            "ClusterPropagationPolicy",
            Some(SchemaKind::ClusterPropagationPolicy),
        ),
        (
            "policy.karmada.io/v1alpha1",
            "OverridePolicy",
            Some(SchemaKind::OverridePolicy),
        ),
        (
            "policy.karmada.io/v1alpha1",
            "ClusterOverridePolicy",
            Some(SchemaKind::ClusterOverridePolicy),
        ),
        (
            "cluster.karmada.io/v1alpha1",
            "Cluster",
            Some(SchemaKind::KarmadaCluster),
        ),
        ("flotilla.dev/v1alpha1", "Cluster", Some(SchemaKind::FlotillaCluster)),
        (
            "flotilla.dev/v1alpha1",
            "GlobalTrafficPolicy",
            Some(SchemaKind::GlobalTrafficPolicy),
        ),
        ("flotilla.dev/v1alpha1", "RepoConfig", Some(SchemaKind::RepoConfig)),
        ("policy.karmada.io/v1alpha1", "FederatedResourceQuota", None),
        ("policy.karmada.io/v1beta1", "PropagationPolicy", None),
        ("apps/v1", "Deployment", None),
    ];
    for (api_version, kind, expected) in cases {
        assert_eq!(
            SchemaKind::for_document(api_version, kind),
            expected,
            "{api_version} {kind}"
        );
    }
}

#[test]
fn every_kind_compiles_and_rejects_the_wrong_kind() {
    for kind in SchemaKind::ALL {
        let found = check(kind, &doc("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"));
        assert!(!found.is_empty(), "{kind:?}");
        assert!(
            found.iter().all(|f| !f.message.contains("internal error")),
            "{kind:?}: {found:#?}"
        );
        assert!(
            found
                .iter()
                .any(|f| f.pointer == "/kind" && f.message.starts_with("kind: must be \"")),
            "{kind:?}: {found:#?}"
        );
    }
}

#[test]
fn findings_are_sorted_and_deduplicated() {
    let found = findings(&pp_with_placement(
        "    zzz: 1\n    aaa: 2\n    clusterAffinities: [{affinityName: a, bogus: 1}, {affinityName: b, bogus: 1}]\n",
    ));
    let keys: Vec<(&str, &str)> = found.iter().map(|f| (f.pointer.as_str(), f.message.as_str())).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(keys, sorted);
    assert_eq!(keys.len(), 4, "{found:#?}");
}

#[test]
fn checking_400_policies_is_fast() {
    let valid = doc(&pp_with_placement(
        "    spreadConstraints: [{spreadByField: cluster, maxGroups: 2}]\n",
    ));
    let invalid = doc(&pp_with_placement(
        "    spreadConstraints: [{spreadByField: cluster, maximum: 2}]\n",
    ));
    // Compile outside the measurement.
    assert!(check(SchemaKind::PropagationPolicy, &valid).is_empty());
    let start = std::time::Instant::now();
    for i in 0..400 {
        let doc = if i % 4 == 0 { &invalid } else { &valid };
        let found = check(SchemaKind::PropagationPolicy, doc);
        assert_eq!(found.len(), usize::from(i % 4 == 0));
    }
    let elapsed = start.elapsed();
    // A few milliseconds in release builds; the bound leaves room for unoptimised test builds.
    assert!(
        elapsed < std::time::Duration::from_millis(500),
        "400 checks took {elapsed:?}"
    );
}
