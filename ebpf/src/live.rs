//! Live inputs of the builder: Service ClusterIPs and EndpointSlice endpoints, as plain data.
//!
//! The caller fills [`Live`] (`reconciler::endpoints::live`: the daemon from its watches,
//! `flotilla endpoints --live` from one list per cluster; offline it stays empty). A cluster present in [`Live::clusters`] is *observed*: its map of services is complete,
//! and a service missing from it has no ClusterIP and no endpoints there. A cluster absent from it is
//! *unknown* and the offline rules apply to it (see the crate documentation).

use crate::config::Protocol;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// What the caller observed on the clusters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Live {
    /// By cluster name.
    pub clusters: BTreeMap<String, LiveCluster>,
}

/// One observed cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveCluster {
    /// By (namespace, name) of the Service.
    pub services: BTreeMap<(String, String), LiveService>,
}

/// One Service on one cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveService {
    /// `spec.clusterIP` as allocated by the cluster (`None` when headless).
    pub cluster_ip: Option<Ipv4Addr>,
    /// The endpoints of its EndpointSlices, one entry per (address, port).
    pub endpoints: Vec<LiveEndpoint>,
}

/// One endpoint address and one of its ports (EndpointSlice `endpoints[]` × `ports[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveEndpoint {
    pub address: Ipv4Addr,
    /// The EndpointSlice port's name: the Service port's name ("" for an unnamed port).
    pub port_name: String,
    pub port: u16,
    pub protocol: Protocol,
    /// `conditions.ready`.
    pub ready: bool,
}

impl Live {
    /// The observed service on `cluster`: `None` when the cluster is unknown, `Some(None)` when it is
    /// observed and the service is not there.
    pub fn service(&self, cluster: &str, namespace: &str, name: &str) -> Option<Option<&LiveService>> {
        self.clusters
            .get(cluster)
            .map(|c| c.services.get(&(namespace.to_string(), name.to_string())))
    }
}

impl LiveService {
    /// Ready endpoints of one Service port.
    pub fn ready_endpoints<'a>(
        &'a self,
        port_name: &'a str,
        protocol: Protocol,
    ) -> impl Iterator<Item = &'a LiveEndpoint> + 'a {
        self.endpoints
            .iter()
            .filter(move |e| e.ready && e.port_name == port_name && e.protocol == protocol)
    }
}
