//! The kernel side: loading the object, pinning maps and links, writing generations with aya.
//!
//! [`Datapath::open`] loads [`ebpf::object::OBJECT`] with every map pinned by name under the pin
//! directory (aya reuses a pinned map when its file exists), then makes sure the four programs are
//! attached to the cgroup through *pinned links* named after the cgroup and the object:
//! `link_<cgroup id>_<object sha256, 12 hex>_<hook>`. Links already pinned under those names are kept
//! untouched (an agent restart), missing ones are attached (as bpf_links, which the kernel always runs
//! side by side with other programs of the cgroup) and pinned, and
//! then any other `link_*` pin is removed, which detaches what an older agent binary or another cgroup
//! had attached. New programs are attached before old ones go, so an upgrade never leaves a gap (for
//! that moment both run: the first rewrites the VIP, the second sees a backend and lets it pass).
//! Nothing is detached when the agent exits.
//!
//! [`Datapath::apply`] writes one document: backends, slots, then services into the inactive
//! generation, flips `flotilla_gen`, records the version in `flotilla_state`, waits for programs
//! that may still read the old generation (an update of the map-in-map `flotilla_barrier`, for which
//! the kernel runs `synchronize_rcu()`), and deletes the old generation (services first). A failed
//! write removes what it wrote and leaves the active generation alone.

use crate::batch;
use anyhow::{anyhow, Context, Result};
use aya::maps::{Array, ArrayOfMaps, HashMap, MapData, PerCpuArray};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::{CgroupAttachMode, CgroupSockAddr};
use aya::{Ebpf, EbpfLoader};
use ebpf::datapath::{self as layout, names, BeKey, BeVal, SlotKey, SlotVal, StateVal, SvcKey, SvcVal, Tables};
use ebpf::object::{OBJECT, PROGRAMS};
use sha2::{Digest, Sha256};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Keys of the entries of one generation (what deleting it takes).
#[derive(Debug, Default)]
struct GenerationKeys {
    services: Vec<SvcKey>,
    slots: Vec<SlotKey>,
    backends: Vec<BeKey>,
}

/// How the programs came to be attached when the agent started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkReport {
    /// Links already pinned for this cgroup and object, kept as they were.
    pub reused: usize,
    /// Links attached and pinned now.
    pub attached: usize,
    /// Stale links (another object or cgroup) removed, which detached them.
    pub removed: usize,
}

/// Time spent in the phases of one apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyTimings {
    pub write_ms: f64,
    pub barrier_ms: f64,
    pub clear_ms: f64,
}

/// The loaded object and its maps.
pub struct Datapath {
    _ebpf: Ebpf,
    gen: Array<MapData, u32>,
    svc: HashMap<MapData, SvcKey, SvcVal>,
    slot: HashMap<MapData, SlotKey, SlotVal>,
    be: HashMap<MapData, BeKey, BeVal>,
    state: Array<MapData, StateVal>,
    stats: PerCpuArray<MapData, u64>,
    barrier: ArrayOfMaps<MapData, Array<MapData, u32>>,
    barrier_inner: Array<MapData, u32>,
    active_keys: GenerationKeys,
    links: LinkReport,
}

/// The first 12 hex digits of the object's SHA-256: names its links.
pub fn object_tag() -> String {
    let digest = Sha256::digest(OBJECT);
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

fn hook(section: &str) -> &str {
    section.trim_start_matches("cgroup/")
}

impl Datapath {
    /// Loads (or reuses) the pinned maps under `pin_dir` and makes sure the programs are attached to
    /// `cgroup` (module docs). Also deletes whatever an interrupted apply left in the inactive
    /// generation.
    pub fn open(pin_dir: &Path, cgroup: &Path) -> Result<Datapath> {
        fs::create_dir_all(pin_dir).with_context(|| format!("creating the pin directory {}", pin_dir.display()))?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(pin_dir)
            .load(OBJECT)
            .context("loading the BPF object (maps pinned under the pin directory)")?;
        let links = attach(&mut ebpf, pin_dir, cgroup)?;
        let take = |ebpf: &mut Ebpf, name: &str| {
            ebpf.take_map(name)
                .ok_or_else(|| anyhow!("the object has no map {name}"))
        };
        let gen = Array::try_from(take(&mut ebpf, names::GEN)?).context("map flotilla_gen")?;
        let svc = HashMap::try_from(take(&mut ebpf, names::SVC)?).context("map flotilla_svc")?;
        let slot = HashMap::try_from(take(&mut ebpf, names::SLOT)?).context("map flotilla_slot")?;
        let be = HashMap::try_from(take(&mut ebpf, names::BE)?).context("map flotilla_be")?;
        let state = Array::try_from(take(&mut ebpf, names::STATE)?).context("map flotilla_state")?;
        let stats = PerCpuArray::try_from(take(&mut ebpf, names::STATS)?).context("map flotilla_stats")?;
        let barrier = ArrayOfMaps::try_from(take(&mut ebpf, names::BARRIER)?).context("map flotilla_barrier")?;
        let barrier_inner = Array::create(1, 0).context("creating the barrier's inner map")?;
        let mut dp = Datapath {
            _ebpf: ebpf,
            gen,
            svc,
            slot,
            be,
            state,
            stats,
            barrier,
            barrier_inner,
            active_keys: GenerationKeys::default(),
            links,
        };
        dp.sweep().context("clearing the inactive generation")?;
        Ok(dp)
    }

    /// How the links were found at start.
    pub fn links(&self) -> LinkReport {
        self.links
    }

    /// The active generation (0 or 1).
    pub fn active(&self) -> Result<u8> {
        Ok((self.gen.get(&0, 0).context("reading flotilla_gen")? & 1) as u8)
    }

    /// The version and hash of the document in the maps, if any (survives agent restarts).
    pub fn applied(&self) -> Result<Option<(u64, String)>> {
        let v = self.state.get(&0, 0).context("reading flotilla_state")?;
        Ok(layout::parse_state(&v))
    }

    /// The program's counters (names in [`layout::STATS`]), summed over CPUs.
    pub fn stats(&self) -> Result<Vec<(&'static str, u64)>> {
        let mut out = Vec::new();
        for (i, name) in layout::STATS.iter().enumerate() {
            let values = self.stats.get(&(i as u32), 0).context("reading flotilla_stats")?;
            out.push((*name, values.iter().sum()));
        }
        Ok(out)
    }

    /// Records the active generation's keys and deletes every entry of the other one.
    fn sweep(&mut self) -> Result<()> {
        let active = self.active()?;
        let mut keys = GenerationKeys::default();
        let mut stale = GenerationKeys::default();
        for k in self.svc.keys() {
            let k = k.context("listing flotilla_svc")?;
            if layout::service_key_gen(&k) == active {
                &mut keys
            } else {
                &mut stale
            }
            .services
            .push(k);
        }
        for k in self.slot.keys() {
            let k = k.context("listing flotilla_slot")?;
            if layout::slot_key_gen(&k) == active {
                &mut keys
            } else {
                &mut stale
            }
            .slots
            .push(k);
        }
        for k in self.be.keys() {
            let k = k.context("listing flotilla_be")?;
            if layout::backend_key_gen(&k) == active {
                &mut keys
            } else {
                &mut stale
            }
            .backends
            .push(k);
        }
        let n = stale.services.len() + stale.slots.len() + stale.backends.len();
        if n > 0 {
            tracing::info!(
                entries = n,
                "removing entries an interrupted apply left in the inactive generation"
            );
        }
        self.delete(&stale);
        self.active_keys = keys;
        Ok(())
    }

    /// Deletes entries: services first, so no reader finds a service without its slots.
    fn delete(&mut self, keys: &GenerationKeys) {
        batch::delete(&mut self.svc, &keys.services);
        batch::delete(&mut self.slot, &keys.slots);
        batch::delete(&mut self.be, &keys.backends);
    }

    /// Writes `tables` (built for [`Self::inactive`]) and switches to them (module docs).
    pub fn apply(&mut self, tables: &Tables, version: u64, hash: &str) -> Result<ApplyTimings> {
        let start = Instant::now();
        let inactive = 1 - self.active()?;
        let mut written = GenerationKeys::default();
        let flipped = self
            .write(tables, inactive, &mut written)
            .and_then(|()| self.gen.set(0, u32::from(inactive), 0).context("flipping flotilla_gen"));
        if let Err(e) = flipped {
            // Nothing reads the inactive generation: removing what was written leaves it empty again.
            self.delete(&written);
            return Err(e);
        }
        let write_ms = ms(start);
        // From here the document routes; what follows cannot undo that, so failures are logged.
        let old = std::mem::replace(&mut self.active_keys, written);
        if let Err(e) = self.state.set(0, layout::state_value(version, hash), 0) {
            tracing::warn!(error = %e, "recording the applied version in flotilla_state failed");
        }
        let barrier = Instant::now();
        if let Err(e) = self.barrier.set(0, &self.barrier_inner, 0) {
            // Without the kernel's grace period, wait long enough for any program run to finish.
            tracing::warn!(error = %e, "the RCU barrier failed; waiting 100 ms instead");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let barrier_ms = ms(barrier);
        let clear = Instant::now();
        self.delete(&old);
        Ok(ApplyTimings {
            write_ms,
            barrier_ms,
            clear_ms: ms(clear),
        })
    }

    /// The generation the next apply writes.
    pub fn inactive(&self) -> Result<u8> {
        Ok(1 - self.active()?)
    }

    fn write(&mut self, tables: &Tables, gen: u8, written: &mut GenerationKeys) -> Result<()> {
        let wrong_gen = tables.backends.iter().any(|(k, _)| layout::backend_key_gen(k) != gen)
            || tables.slots.iter().any(|(k, _)| layout::slot_key_gen(k) != gen)
            || tables.services.iter().any(|(k, _)| layout::service_key_gen(k) != gen);
        if wrong_gen {
            return Err(anyhow!("tables were built for the other generation"));
        }
        // Backends, then slots, then services: a service is only reachable once all it points to is.
        write_all(&self.be, &tables.backends, &mut written.backends).context("writing flotilla_be")?;
        write_all(&self.slot, &tables.slots, &mut written.slots).context("writing flotilla_slot")?;
        write_all(&self.svc, &tables.services, &mut written.services).context("writing flotilla_svc")?;
        Ok(())
    }
}

/// Writes `entries` in batches, recording the keys written (also when it fails part way).
fn write_all<K: aya::Pod, V: aya::Pod>(
    map: &HashMap<MapData, K, V>,
    entries: &[(K, V)],
    written: &mut Vec<K>,
) -> Result<()> {
    let (keys, values): (Vec<K>, Vec<V>) = entries.iter().copied().unzip();
    match batch::update(map, &keys, &values) {
        Ok(()) => {
            written.extend_from_slice(&keys);
            Ok(())
        }
        Err((done, e)) => {
            written.extend_from_slice(&keys[..done]);
            Err(anyhow!("{e} (after {done} of {} entries)", keys.len()))
        }
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// Makes sure every program is attached to `cgroup` through a link pinned under the name for this
/// cgroup and object, then removes other link pins (module docs).
fn attach(ebpf: &mut Ebpf, pin_dir: &Path, cgroup: &Path) -> Result<LinkReport> {
    let cgroup_id = crate::system::cgroup_id(cgroup)?;
    let prefix = format!("link_{cgroup_id}_{}_", object_tag());
    let mut report = LinkReport {
        reused: 0,
        attached: 0,
        removed: 0,
    };
    let mut wanted: Vec<PathBuf> = Vec::new();
    for (program, section) in PROGRAMS {
        let pin = pin_dir.join(format!("{prefix}{}", hook(section)));
        wanted.push(pin.clone());
        if pin.exists() && PinnedLink::from_pin(&pin).is_ok() {
            report.reused += 1;
            continue;
        }
        let _ = fs::remove_file(&pin);
        let prog: &mut CgroupSockAddr = ebpf
            .program_mut(program)
            .ok_or_else(|| anyhow!("the object has no program {program}"))?
            .try_into()
            .with_context(|| format!("{program} is not a cgroup sock_addr program"))?;
        prog.load()
            .with_context(|| format!("loading {program} ({section}) into the kernel"))?;
        let file = fs::File::open(cgroup).with_context(|| format!("opening the cgroup {}", cgroup.display()))?;
        // A bpf_link on a cgroup always attaches in multi mode (it coexists with other programs and
        // other links); the kernel refuses the ALLOW_MULTI flag on links, so no flag is passed.
        let id = prog
            .attach(file, CgroupAttachMode::Single)
            .with_context(|| format!("attaching {section} to {}", cgroup.display()))?;
        let link = FdLink::try_from(prog.take_link(id)?).context("the kernel gave no bpf_link (needs Linux 5.7+)")?;
        link.pin(&pin)
            .with_context(|| format!("pinning the {section} link at {}", pin.display()))?;
        report.attached += 1;
    }
    let entries = fs::read_dir(pin_dir).with_context(|| format!("listing {}", pin_dir.display()))?;
    for entry in entries {
        let path = entry.context("listing the pin directory")?.path();
        let stale = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("link_"))
            && !wanted.contains(&path);
        if stale {
            fs::remove_file(&path).with_context(|| format!("removing the stale link {}", path.display()))?;
            report.removed += 1;
        }
    }
    Ok(report)
}

/// Removes every pin under `pin_dir` (links first, which detaches the programs, then the maps) and
/// the directory: what `flotilla-agent detach` does.
pub fn detach(pin_dir: &Path) -> Result<usize> {
    let mut paths: Vec<PathBuf> = fs::read_dir(pin_dir)
        .with_context(|| format!("listing {}", pin_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    paths.sort_by_key(|p| {
        !p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("link_"))
    });
    for p in &paths {
        fs::remove_file(p).with_context(|| format!("removing {}", p.display()))?;
    }
    fs::remove_dir(pin_dir).with_context(|| format!("removing {}", pin_dir.display()))?;
    Ok(paths.len())
}
