//! A Python plugin shipped as a wheel (004's packaging): the wheel registers the plugin under
//! the `trellis.plugins` entry-point group and carries its manifest in the entry point's
//! package folder. [`unpack`] turns such a wheel into a plugin directory (the manifest, the
//! requirements file it names, and the wheel itself at the root, which makes it the plugin's
//! own code for [`crate::python_env`]), which is then packaged and installed like any other.
//!
//! The wheel is read as hostile input: only a few small members are read, each capped, and
//! nothing is extracted; pip installs the wheel later.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::python_env::ENTRY_POINT_GROUP;

/// Largest member read from a wheel (the manifest, `entry_points.txt`, the requirements).
const MAX_MEMBER_BYTES: u64 = 1 << 20;

/// Whether `path` names a wheel.
pub fn is_wheel(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "whl")
}

/// Writes the plugin directory for `wheel` at `into` (which must not exist) and returns the
/// entry point's name.
pub fn unpack(wheel: &Path, into: &Path) -> Result<String, String> {
    let file =
        fs::File::open(wheel).map_err(|e| format!("cannot open {}: {e}", wheel.display()))?;
    let mut zip =
        zip::ZipArchive::new(file).map_err(|e| format!("it is not a zip archive: {e}"))?;
    let names: Vec<String> = zip
        .file_names()
        .map(|n| n.map(|n| n.into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("a member name cannot be read: {e}"))?;
    let dist_infos: Vec<&str> = names
        .iter()
        .filter_map(|n| n.strip_suffix("/entry_points.txt"))
        .filter(|d| d.ends_with(".dist-info") && !d.contains('/'))
        .collect();
    let [dist_info] = dist_infos[..] else {
        return Err(format!(
            "it has no `*.dist-info/entry_points.txt`: a plugin wheel registers itself in the `{ENTRY_POINT_GROUP}` entry-point group (pyproject.toml: `[project.entry-points.\"{ENTRY_POINT_GROUP}\"]`)"
        ));
    };
    let entry_points = read_member(&mut zip, &format!("{dist_info}/entry_points.txt"))?;
    let plugins = entry_points_in(&entry_points, ENTRY_POINT_GROUP);
    let (name, target) = match &plugins[..] {
        [one] => one.clone(),
        [] => {
            return Err(format!(
                "it registers nothing in the `{ENTRY_POINT_GROUP}` entry-point group"
            ));
        }
        many => {
            let listed: Vec<&str> = many.iter().map(|(n, _)| n.as_str()).collect();
            return Err(format!(
                "it registers {} plugins ({}); a wheel installs as one plugin: ship one entry point per wheel",
                many.len(),
                listed.join(", ")
            ));
        }
    };
    let module = target.split(':').next().unwrap_or(&target).trim();
    let (manifest_member, folder) = find_manifest(&names, module).ok_or_else(|| {
        format!(
            "it has no plugin manifest beside the entry point `{name} = {target}`: put `plugin.yaml` in the `{}` package folder and include it as package data",
            module.split('.').next().unwrap_or(module)
        )
    })?;
    let manifest_text = read_member(&mut zip, &manifest_member)?;
    let manifest_name = manifest_member
        .rsplit('/')
        .next()
        .unwrap_or("plugin.yaml")
        .to_owned();
    let format = trellis_manifest::Format::from_path(Path::new(&manifest_name))
        .ok_or_else(|| format!("{manifest_member}: not a manifest file name"))?;
    let shown = wheel.join(&manifest_member);
    let manifest =
        trellis_manifest::parse_str(&manifest_text, format, &shown).map_err(|e| e.to_string())?;
    let runtime = &manifest.runtime;
    if runtime.entry_point.as_deref() != Some(name.as_str()) {
        return Err(format!(
            "{}: `runtime.entry_point` must be `{name}`, the name the wheel registers in `{ENTRY_POINT_GROUP}` (it is {})",
            shown.display(),
            runtime
                .entry_point
                .as_deref()
                .map_or("missing".to_owned(), |e| format!("`{e}`"))
        ));
    }
    if runtime.wheels.is_some() {
        return Err(format!(
            "{}: a wheel cannot carry the wheels of its dependencies; remove `runtime.wheels` (pip fetches what `runtime.requirements` pins) or ship the plugin as a directory",
            shown.display()
        ));
    }
    fs::create_dir_all(into).map_err(|e| format!("cannot make {}: {e}", into.display()))?;
    let write = |relative: &str, bytes: &[u8]| {
        let path = into.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| format!("cannot make {}: {e}", parent.display()))?;
        }
        fs::write(&path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    write(&manifest_name, manifest_text.as_bytes())?;
    if let Some(requirements) = &runtime.requirements {
        let safe = !requirements.starts_with('/')
            && requirements
                .split('/')
                .all(|p| !p.is_empty() && p != "." && p != "..");
        if !safe {
            return Err(format!(
                "{}: `runtime.requirements` must be a path inside the package folder, not `{requirements}`",
                shown.display()
            ));
        }
        let member = format!("{folder}{requirements}");
        let text = read_member(&mut zip, &member).map_err(|_| {
            format!(
                "{}: `runtime.requirements` names {requirements}, which the wheel does not carry beside the manifest (include it as package data)",
                shown.display()
            )
        })?;
        write(requirements, text.as_bytes())?;
    }
    let wheel_name = wheel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| format!("{} has no file name", wheel.display()))?;
    let copy: PathBuf = into.join(&wheel_name);
    fs::copy(wheel, &copy)
        .map_err(|e| format!("cannot copy {} to {}: {e}", wheel.display(), copy.display()))?;
    Ok(name)
}

/// The manifest nearest the entry point's module: `a/b/plugin.yaml` for `a.b.c` (a module
/// `c.py` or a package `c/`), then its parents up to the top-level package.
fn find_manifest(names: &[String], module: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = module.split('.').collect();
    for depth in (1..=parts.len()).rev() {
        let folder = format!("{}/", parts[..depth].join("/"));
        for file in trellis_manifest::MANIFEST_FILE_NAMES {
            let member = format!("{folder}{file}");
            if names.iter().any(|n| n == &member) {
                return Some((member, folder));
            }
        }
    }
    None
}

fn read_member(zip: &mut zip::ZipArchive<fs::File>, name: &str) -> Result<String, String> {
    let member = zip.by_name(name).map_err(|e| format!("{name}: {e}"))?;
    let mut text = String::new();
    member
        .take(MAX_MEMBER_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{name}: {e}"))?;
    if text.len() as u64 > MAX_MEMBER_BYTES {
        return Err(format!("{name} is larger than {MAX_MEMBER_BYTES} bytes"));
    }
    Ok(text)
}

/// The `name = target` lines of one `[group]` of an `entry_points.txt`.
fn entry_points_in(text: &str, group: &str) -> Vec<(String, String)> {
    let mut current = None;
    let mut found = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(section.trim().to_owned());
        } else if current.as_deref() == Some(group)
            && let Some((name, target)) = line.split_once('=')
        {
            found.push((name.trim().to_owned(), target.trim().to_owned()));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_points_are_read_from_their_group_only() {
        let text = "[console_scripts]\nx = a:b\n\n[trellis.plugins]\ncost = cost_assistant.plugin:CostAssistant\n";
        assert_eq!(
            entry_points_in(text, "trellis.plugins"),
            vec![(
                "cost".to_owned(),
                "cost_assistant.plugin:CostAssistant".to_owned()
            )]
        );
    }

    #[test]
    fn the_manifest_nearest_the_module_is_found() {
        let names = vec![
            "a/plugin.yaml".to_owned(),
            "a/b/plugin.yaml".to_owned(),
            "a/b/c.py".to_owned(),
        ];
        assert_eq!(
            find_manifest(&names, "a.b.c"),
            Some(("a/b/plugin.yaml".to_owned(), "a/b/".to_owned()))
        );
        assert_eq!(
            find_manifest(&names, "a.x"),
            Some(("a/plugin.yaml".to_owned(), "a/".to_owned()))
        );
        assert_eq!(find_manifest(&names, "z"), None);
    }
}
