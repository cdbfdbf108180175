//! cgroups for plugin processes: one directory per controller (pids, memory) under the host's
//! own cgroup, made by the host with its limits written, joined by the launcher, removed when
//! the process is gone. cgroup v1 (a hierarchy per controller) and v2 (one unified hierarchy)
//! are both read from `/proc/self/cgroup` and `/proc/self/mountinfo`.

use std::path::{Path, PathBuf};

/// Where this process may make cgroups, per controller, or why it may not.
#[derive(Debug, Clone)]
pub struct Cgroups {
    pub pids: Result<PathBuf, String>,
    pub memory: Result<PathBuf, String>,
    /// The unified (v2) hierarchy serves both controllers.
    unified: bool,
}

/// The cgroup directories of one plugin process.
#[derive(Debug, Default)]
pub struct PluginCgroups {
    pub dirs: Vec<PathBuf>,
}

impl Cgroups {
    /// Finds this process's cgroup for each controller and checks that a child can be made.
    pub fn detect() -> Cgroups {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let v1 = |controller: &str| -> Result<PathBuf, String> {
            let path = own
                .lines()
                .filter_map(|l| l.splitn(3, ':').nth(1).zip(l.splitn(3, ':').nth(2)))
                .find(|(cs, _)| cs.split(',').any(|c| c == controller))
                .map(|(_, p)| p.to_owned())
                .ok_or_else(|| format!("no cgroup v1 `{controller}` hierarchy"))?;
            let mount = mount_point(&mounts, "cgroup", Some(controller))
                .ok_or_else(|| format!("the `{controller}` cgroup hierarchy is not mounted"))?;
            writable(&mount.join(path.trim_start_matches('/')))
        };
        let v2 = || -> Result<PathBuf, String> {
            let path = own
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .ok_or("no cgroup v2 hierarchy")?;
            let mount = mount_point(&mounts, "cgroup2", None).ok_or("cgroup2 is not mounted")?;
            writable(&mount.join(path.trim_start_matches('/')))
        };
        let (pids, memory) = (v1("pids"), v1("memory"));
        if pids.is_ok() || memory.is_ok() {
            return Cgroups {
                pids,
                memory,
                unified: false,
            };
        }
        let unified = v2();
        let with = |controller: &str| {
            unified.clone().and_then(|dir| {
                let enabled =
                    std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
                if enabled.split_whitespace().any(|c| c == controller) {
                    Ok(dir)
                } else {
                    Err(format!(
                        "the `{controller}` controller is not enabled for this cgroup ({})",
                        dir.display()
                    ))
                }
            })
        };
        Cgroups {
            pids: with("pids").map_err(|e| format!("{e}; v1: {}", pids.unwrap_err())),
            memory: with("memory").map_err(|e| format!("{e}; v1: {}", memory.unwrap_err())),
            unified: true,
        }
    }

    /// Makes the cgroups of one plugin process, named `name`, with at most `processes`
    /// processes and `memory` bytes (each only when given and available).
    pub fn create(
        &self,
        name: &str,
        processes: Option<u64>,
        memory: Option<u64>,
    ) -> std::io::Result<PluginCgroups> {
        let mut made = PluginCgroups::default();
        let mut make = |parent: &Path, files: &[(&str, String)]| -> std::io::Result<()> {
            let dir = parent.join(name);
            if !made.dirs.contains(&dir) {
                std::fs::create_dir(&dir)?;
                made.dirs.push(dir.clone());
            }
            for (file, value) in files {
                std::fs::write(dir.join(file), value)?;
            }
            Ok(())
        };
        if let (Ok(parent), Some(n)) = (&self.pids, processes) {
            make(parent, &[("pids.max", n.to_string())])?;
        }
        if let (Ok(parent), Some(bytes)) = (&self.memory, memory) {
            let file = if self.unified {
                "memory.max"
            } else {
                "memory.limit_in_bytes"
            };
            let mut files = vec![(file, bytes.to_string())];
            if self.unified {
                files.push(("memory.swap.max", "0".to_owned()));
            }
            // memory.swap.max is absent without swap accounting; the limit alone still holds.
            if let Err(e) = make(parent, &files[..1]) {
                made.remove();
                return Err(e);
            }
            let _ = files
                .get(1)
                .map(|(f, v)| std::fs::write(parent.join(name).join(f), v));
        }
        Ok(made)
    }
}

impl Cgroups {
    /// Removes the cgroups that hosts which are gone (killed with SIGKILL, say) left behind:
    /// `trellis-<pid>-…` directories whose host process no longer exists. Their processes were
    /// already killed by the sandbox's init when the host's lifeline closed; any left are
    /// killed now.
    pub fn remove_stale(&self) {
        let mut stale = PluginCgroups::default();
        for parent in [&self.pids, &self.memory].into_iter().flatten() {
            let Ok(entries) = std::fs::read_dir(parent) else {
                continue;
            };
            for entry in entries.filter_map(Result::ok) {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(pid) = name
                    .strip_prefix("trellis-")
                    .and_then(|rest| rest.split('-').next())
                    .and_then(|p| p.parse::<u32>().ok())
                else {
                    continue;
                };
                let dir = entry.path();
                if pid != std::process::id()
                    && !Path::new(&format!("/proc/{pid}")).exists()
                    && dir.is_dir()
                    && !stale.dirs.contains(&dir)
                {
                    stale.dirs.push(dir);
                }
            }
        }
        stale.remove();
    }
}

impl PluginCgroups {
    /// The most memory the process tree has used, when the memory controller tells.
    pub fn peak_memory(&self) -> Option<u64> {
        self.dirs.iter().find_map(|dir| {
            ["memory.peak", "memory.max_usage_in_bytes"]
                .iter()
                .find_map(|f| std::fs::read_to_string(dir.join(f)).ok())
                .and_then(|text| text.trim().parse().ok())
        })
    }

    /// Kills what is left in the cgroups, then removes them.
    pub fn remove(&mut self) {
        for dir in self.dirs.drain(..) {
            for _ in 0..100 {
                let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                let pids: Vec<i32> = procs
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect();
                if pids.is_empty() {
                    break;
                }
                for pid in pids {
                    // SAFETY: signals a process of the plugin's own cgroup.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

impl Drop for PluginCgroups {
    fn drop(&mut self) {
        self.remove();
    }
}

fn mount_point(mountinfo: &str, fstype: &str, option: Option<&str>) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut r = right.split_whitespace();
        if r.next()? != fstype {
            return None;
        }
        let super_options = r.nth(1).unwrap_or_default();
        if let Some(opt) = option
            && !super_options.split(',').any(|o| o == opt)
        {
            return None;
        }
        left.split_whitespace().nth(4).map(PathBuf::from)
    })
}

fn writable(dir: &Path) -> Result<PathBuf, String> {
    let probe = dir.join(format!("trellis-probe-{}", std::process::id()));
    std::fs::create_dir(&probe)
        .map_err(|e| format!("cannot make a cgroup in {}: {e}", dir.display()))?;
    let _ = std::fs::remove_dir(&probe);
    Ok(dir.to_owned())
}
