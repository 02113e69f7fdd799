//! Which kinds are namespaced: a built-in table of the Kubernetes API plus the CRDs of the repository.

use std::collections::HashMap;

/// Scope of a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Namespaced,
    Cluster,
}

/// Built-in kinds of Kubernetes 1.34, by (group, kind). Group "" is the core group.
const BUILTIN: &[(&str, &str, Scope)] = {
    use Scope::*;
    &[
        ("", "Binding", Namespaced),
        ("", "ComponentStatus", Cluster),
        ("", "ConfigMap", Namespaced),
        ("", "Endpoints", Namespaced),
        ("", "Event", Namespaced),
        ("", "LimitRange", Namespaced),
        ("", "Namespace", Cluster),
        ("", "Node", Cluster),
        ("", "PersistentVolume", Cluster),
        ("", "PersistentVolumeClaim", Namespaced),
        ("", "Pod", Namespaced),
        ("", "PodTemplate", Namespaced),
        ("", "ReplicationController", Namespaced),
        ("", "ResourceQuota", Namespaced),
        ("", "Secret", Namespaced),
        ("", "Service", Namespaced),
        ("", "ServiceAccount", Namespaced),
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration", Cluster),
        (
            "admissionregistration.k8s.io",
            "ValidatingWebhookConfiguration",
            Cluster,
        ),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy", Cluster),
        (
            "admissionregistration.k8s.io",
            "ValidatingAdmissionPolicyBinding",
            Cluster,
        ),
        ("admissionregistration.k8s.io", "MutatingAdmissionPolicy", Cluster),
        (
            "admissionregistration.k8s.io",
            "MutatingAdmissionPolicyBinding",
            Cluster,
        ),
        ("apiextensions.k8s.io", "CustomResourceDefinition", Cluster),
        ("apiregistration.k8s.io", "APIService", Cluster),
        ("apps", "ControllerRevision", Namespaced),
        ("apps", "DaemonSet", Namespaced),
        ("apps", "Deployment", Namespaced),
        ("apps", "ReplicaSet", Namespaced),
        ("apps", "StatefulSet", Namespaced),
        ("autoscaling", "HorizontalPodAutoscaler", Namespaced),
        ("batch", "CronJob", Namespaced),
        ("batch", "Job", Namespaced),
        ("certificates.k8s.io", "CertificateSigningRequest", Cluster),
        ("certificates.k8s.io", "ClusterTrustBundle", Cluster),
        ("coordination.k8s.io", "Lease", Namespaced),
        ("discovery.k8s.io", "EndpointSlice", Namespaced),
        ("events.k8s.io", "Event", Namespaced),
        ("flowcontrol.apiserver.k8s.io", "FlowSchema", Cluster),
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration", Cluster),
        ("networking.k8s.io", "Ingress", Namespaced),
        ("networking.k8s.io", "IngressClass", Cluster),
        ("networking.k8s.io", "NetworkPolicy", Namespaced),
        ("networking.k8s.io", "IPAddress", Cluster),
        ("networking.k8s.io", "ServiceCIDR", Cluster),
        ("node.k8s.io", "RuntimeClass", Cluster),
        ("policy", "PodDisruptionBudget", Namespaced),
        ("rbac.authorization.k8s.io", "ClusterRole", Cluster),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding", Cluster),
        ("rbac.authorization.k8s.io", "Role", Namespaced),
        ("rbac.authorization.k8s.io", "RoleBinding", Namespaced),
        ("resource.k8s.io", "DeviceClass", Cluster),
        ("resource.k8s.io", "ResourceClaim", Namespaced),
        ("resource.k8s.io", "ResourceClaimTemplate", Namespaced),
        ("resource.k8s.io", "ResourceSlice", Cluster),
        ("scheduling.k8s.io", "PriorityClass", Cluster),
        ("storage.k8s.io", "CSIDriver", Cluster),
        ("storage.k8s.io", "CSINode", Cluster),
        ("storage.k8s.io", "CSIStorageCapacity", Namespaced),
        ("storage.k8s.io", "StorageClass", Cluster),
        ("storage.k8s.io", "VolumeAttachment", Cluster),
        ("storage.k8s.io", "VolumeAttributesClass", Cluster),
        // Widely used CRDs whose scope users should not have to declare.
        ("multicluster.x-k8s.io", "ServiceExport", Namespaced),
        ("multicluster.x-k8s.io", "ServiceImport", Namespaced),
        ("gateway.networking.k8s.io", "GatewayClass", Cluster),
        ("gateway.networking.k8s.io", "Gateway", Namespaced),
        ("gateway.networking.k8s.io", "HTTPRoute", Namespaced),
        ("gateway.networking.k8s.io", "GRPCRoute", Namespaced),
        ("gateway.networking.k8s.io", "ReferenceGrant", Namespaced),
        ("monitoring.coreos.com", "ServiceMonitor", Namespaced),
        ("monitoring.coreos.com", "PodMonitor", Namespaced),
        ("monitoring.coreos.com", "PrometheusRule", Namespaced),
        ("cert-manager.io", "Certificate", Namespaced),
        ("cert-manager.io", "Issuer", Namespaced),
        ("cert-manager.io", "ClusterIssuer", Cluster),
    ]
};

/// Scope knowledge: built-ins, overridden by the repository's CRDs.
#[derive(Debug, Clone, Default)]
pub struct ScopeTable {
    crds: HashMap<(String, String), Scope>,
}

impl ScopeTable {
    /// Registers a CRD's kind (from `spec.group`, `spec.names.kind`, `spec.scope`).
    pub fn add_crd(&mut self, group: &str, kind: &str, scope: Scope) {
        self.crds.insert((group.to_string(), kind.to_string()), scope);
    }

    /// The scope of a kind, `None` when unknown.
    pub fn scope(&self, group: &str, kind: &str) -> Option<Scope> {
        if let Some(s) = self.crds.get(&(group.to_string(), kind.to_string())) {
            return Some(*s);
        }
        BUILTIN
            .iter()
            .find(|(g, k, _)| *g == group && *k == kind)
            .map(|(_, _, s)| *s)
    }
}

/// The group of an `apiVersion` (`apps/v1` -> `apps`, `v1` -> ``).
pub fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_and_crds() {
        let mut t = ScopeTable::default();
        assert_eq!(t.scope("apps", "Deployment"), Some(Scope::Namespaced));
        assert_eq!(t.scope("", "Namespace"), Some(Scope::Cluster));
        assert_eq!(t.scope("example.com", "Widget"), None);
        t.add_crd("example.com", "Widget", Scope::Cluster);
        assert_eq!(t.scope("example.com", "Widget"), Some(Scope::Cluster));
        assert_eq!(group_of("apps/v1"), "apps");
        assert_eq!(group_of("v1"), "");
    }
}
