//! What the host hands the launcher, and what the launcher can do on this machine.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One sandbox layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// User, mount, PID (with a reaping init), network, IPC and UTS namespaces.
    Namespaces,
    /// Landlock file-system (and, on ABI 4+, TCP) rules.
    Landlock,
    /// `no_new_privs` and a seccomp filter.
    Seccomp,
    /// Resource limits: open files, CPU seconds, core dumps, and memory when no cgroup holds it.
    Rlimits,
    /// A cgroup bounding the number of processes.
    CgroupPids,
    /// A cgroup bounding memory.
    CgroupMemory,
}

impl Layer {
    pub const ALL: [Layer; 6] = [
        Layer::Namespaces,
        Layer::Landlock,
        Layer::Seccomp,
        Layer::Rlimits,
        Layer::CgroupPids,
        Layer::CgroupMemory,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Namespaces => "namespaces",
            Layer::Landlock => "landlock",
            Layer::Seccomp => "seccomp",
            Layer::Rlimits => "rlimits",
            Layer::CgroupPids => "cgroup-pids",
            Layer::CgroupMemory => "cgroup-memory",
        }
    }

    /// What the layer holds, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Layer::Namespaces => {
                "own user, mount, PID, network and IPC namespaces (no network, own /proc, .trellis/ covered)"
            }
            Layer::Landlock => "file access limited to the granted paths (Landlock); no TCP",
            Layer::Seccomp => "no sockets, mounts, namespaces, tracing or kernel modules (seccomp)",
            Layer::Rlimits => "open files, CPU time and core dumps bounded (rlimits)",
            Layer::CgroupPids => "number of processes bounded (cgroup)",
            Layer::CgroupMemory => "memory bounded (cgroup)",
        }
    }
}

/// Which layers this machine applies, and why the others are missing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Support {
    pub available: Vec<Layer>,
    /// Each missing layer with the reason.
    pub missing: Vec<(Layer, String)>,
    /// The Landlock ABI version, when Landlock is available.
    pub landlock_abi: Option<i32>,
}

impl Support {
    /// Nothing is available, for `reason`.
    pub fn none(reason: &str) -> Support {
        Support {
            available: Vec::new(),
            missing: Layer::ALL.iter().map(|l| (*l, reason.to_owned())).collect(),
            landlock_abi: None,
        }
    }

    pub fn has(&self, layer: Layer) -> bool {
        self.available.contains(&layer)
    }

    /// Whether every layer is available.
    pub fn complete(&self) -> bool {
        self.missing.is_empty()
    }
}

/// Paths the plugin may reach, absolute and real (symbolic links resolved by the host).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PathRules {
    /// Trees readable (and executable: the interpreter, system libraries, the plugin).
    pub read_exec_trees: Vec<PathBuf>,
    /// Trees readable.
    pub read_trees: Vec<PathBuf>,
    /// Trees readable and writable.
    pub write_trees: Vec<PathBuf>,
    /// Single files readable.
    pub read_files: Vec<PathBuf>,
    /// Single files readable and writable.
    pub write_files: Vec<PathBuf>,
    /// Directories whose names may be listed.
    pub list_dirs: Vec<PathBuf>,
    /// Directories covered by an empty, read-only file system in the plugin's mount namespace
    /// (the project's `.trellis/`).
    pub hidden: Vec<PathBuf>,
    /// Directories inside a hidden one that stay visible, read-only (the plugin's own package
    /// in `.trellis/plugins/<name>/`).
    pub exposed: Vec<PathBuf>,
}

/// Resource limits; `None` leaves a limit unset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    pub memory_bytes: Option<u64>,
    pub cpu_seconds: Option<u64>,
    pub open_files: Option<u64>,
    pub processes: Option<u64>,
}

/// Everything the launcher needs to start one plugin process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LaunchSpec {
    pub program: PathBuf,
    /// Arguments after the program (`argv[1..]`).
    pub args: Vec<String>,
    /// The whole environment of the plugin.
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    /// The layers to apply; each one must hold or the launch fails.
    pub layers: Vec<Layer>,
    pub paths: PathRules,
    pub limits: Limits,
    /// cgroup directories (one per controller) the host made for this process, with their
    /// limits already written; the launcher joins them.
    pub cgroups: Vec<PathBuf>,
    /// The launcher has the lifeline at [`crate::LIFELINE_FD`] and the plugin's channel at
    /// [`crate::PLUGIN_FD`]; without, it runs a plain command (a plugin's `subprocess`), which
    /// ends with the launcher's process group.
    pub lifeline: bool,
}

impl LaunchSpec {
    pub fn wants(&self, layer: Layer) -> bool {
        self.layers.contains(&layer)
    }
}
