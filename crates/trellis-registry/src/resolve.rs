//! Dependency resolution across registries: which version of which plugin to install.
//!
//! Each plugin name comes from exactly one registry: the highest-priority one that lists it.
//! A lower-priority registry can therefore never shadow a private plugin with a public one of
//! the same name (dependency confusion). Within that registry the highest version that meets
//! every requirement on the name and the running trellis is chosen; yanked versions are
//! skipped unless the lockfile pins them. When the choices cannot all hold, the resolver
//! backtracks, and when nothing works it explains the conflict with the chain of requirements
//! that led to each side.

use std::collections::BTreeMap;
use std::fmt;

use semver::{Version, VersionReq};

use crate::index::IndexEntry;

/// The versions one registry lists for one plugin.
#[derive(Debug, Clone)]
pub struct Listing {
    /// The registry's name, as configured.
    pub registry: String,
    pub entries: Vec<IndexEntry>,
}

/// Where the resolver gets candidates: every registry's listing of `name`, highest priority
/// first (empty when no registry has it).
pub trait Catalog {
    fn listings(&self, name: &str) -> Vec<Listing>;
}

/// A version the lockfile pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub version: Version,
    pub sha256: String,
    pub registry: String,
}

/// One plugin to install.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub registry: String,
    pub entry: IndexEntry,
    /// Why it is in the plan: `requested` or `required by NAME VERSION`.
    pub because: String,
}

/// A requirement and how it came about.
#[derive(Debug, Clone)]
struct Need {
    name: String,
    req: VersionReq,
    /// From the user's request down to this requirement.
    chain: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("no registry lists `{name}` ({})", chain.join(" → "))]
    NotFound { name: String, chain: Vec<String> },

    #[error("{}", conflict_text(.name, .requirements, .available))]
    Conflict {
        name: String,
        /// Each requirement on the name with the chain that led to it.
        requirements: Vec<(String, Vec<String>)>,
        /// Versions that exist (not yanked), newest first, with why each was ruled out.
        available: Vec<(Version, String)>,
    },

    #[error(
        "--locked: the lockfile pins {name} {pinned} from {registry}, but {problem}; run without --locked to resolve again"
    )]
    LockedUnavailable {
        name: String,
        pinned: Version,
        registry: String,
        problem: String,
    },
}

fn conflict_text(
    name: &str,
    requirements: &[(String, Vec<String>)],
    available: &[(Version, String)],
) -> String {
    let mut text = format!("no version of `{name}` satisfies every requirement on it:");
    for (req, chain) in requirements {
        text.push_str(&format!("\n  {name} {req}, because {}", chain.join(" → ")));
    }
    if available.is_empty() {
        text.push_str("\n  no version is available (all yanked, or none published)");
    } else {
        for (version, why) in available {
            text.push_str(&format!("\n  {name} {version}: {why}"));
        }
    }
    text
}

/// What to resolve against.
pub struct Request<'a> {
    /// What the user asked for: names with requirements.
    pub roots: Vec<(String, VersionReq)>,
    /// The running trellis, to skip versions that do not support it.
    pub trellis: &'a Version,
    /// Versions the lockfile pins: used when they still satisfy the requirements.
    pub pins: &'a BTreeMap<String, Pin>,
    /// Only the pinned versions may be used (`install --locked`).
    pub locked: bool,
}

/// Resolves `request` against `catalog`: every plugin to install, dependencies before the
/// plugins that need them.
pub fn resolve(
    catalog: &dyn Catalog,
    request: &Request<'_>,
) -> Result<Vec<Resolved>, ResolveError> {
    let needs: Vec<Need> = request
        .roots
        .iter()
        .map(|(name, req)| Need {
            name: name.clone(),
            req: req.clone(),
            chain: vec![format!("you asked for {name} {req}")],
        })
        .collect();
    let mut chosen: BTreeMap<String, Choice> = BTreeMap::new();
    let mut all_needs: Vec<Need> = Vec::new();
    let mut worst: Option<ResolveError> = None;
    if solve(
        catalog,
        request,
        needs,
        &mut chosen,
        &mut all_needs,
        &mut worst,
    ) {
        Ok(order(&chosen))
    } else {
        Err(worst.unwrap_or_else(|| ResolveError::NotFound {
            name: request
                .roots
                .first()
                .map(|(n, _)| n.clone())
                .unwrap_or_default(),
            chain: Vec::new(),
        }))
    }
}

#[derive(Debug, Clone)]
struct Choice {
    registry: String,
    entry: IndexEntry,
    because: String,
}

fn solve(
    catalog: &dyn Catalog,
    request: &Request<'_>,
    mut pending: Vec<Need>,
    chosen: &mut BTreeMap<String, Choice>,
    all_needs: &mut Vec<Need>,
    worst: &mut Option<ResolveError>,
) -> bool {
    let Some(need) = pending.pop() else {
        return true;
    };
    all_needs.push(need.clone());
    let depth = all_needs.len();
    let restore = |all_needs: &mut Vec<Need>| all_needs.truncate(depth - 1);

    if let Some(choice) = chosen.get(&need.name) {
        if need.req.matches(&choice.entry.version) {
            let ok = solve(catalog, request, pending, chosen, all_needs, worst);
            if !ok {
                restore(all_needs);
            }
            return ok;
        }
        record_conflict(catalog, request, &need.name, all_needs, worst);
        restore(all_needs);
        return false;
    }

    let Some(listing) = catalog.listings(&need.name).into_iter().next() else {
        *worst = Some(ResolveError::NotFound {
            name: need.name.clone(),
            chain: need.chain.clone(),
        });
        restore(all_needs);
        return false;
    };
    let pin = request.pins.get(&need.name);
    if request.locked {
        let Some(pin) = pin else {
            *worst = Some(ResolveError::LockedUnavailable {
                name: need.name.clone(),
                pinned: Version::new(0, 0, 0),
                registry: listing.registry.clone(),
                problem: "it is not in the lockfile".to_owned(),
            });
            restore(all_needs);
            return false;
        };
        let problem = match listing.entries.iter().find(|e| e.version == pin.version) {
            None => Some(format!("{} no longer lists that version", listing.registry)),
            Some(e) if e.sha256 != pin.sha256 => Some(format!(
                "{} now lists it with sha256 {} instead of {}",
                listing.registry, e.sha256, pin.sha256
            )),
            Some(_) if listing.registry != pin.registry => {
                Some(format!("it now resolves from {} instead", listing.registry))
            }
            Some(_) => None,
        };
        if let Some(problem) = problem {
            *worst = Some(ResolveError::LockedUnavailable {
                name: need.name.clone(),
                pinned: pin.version.clone(),
                registry: pin.registry.clone(),
                problem,
            });
            restore(all_needs);
            return false;
        }
    }

    let requirements: Vec<&Need> = all_needs.iter().filter(|n| n.name == need.name).collect();
    let mut candidates: Vec<&IndexEntry> = listing
        .entries
        .iter()
        .filter(|e| usable(e, request, pin).is_ok())
        .filter(|e| requirements.iter().all(|n| n.req.matches(&e.version)))
        .collect();
    // The pinned version first (a lockfile reproduces), then newest first.
    candidates.sort_by(|a, b| {
        let pinned = |e: &IndexEntry| pin.is_some_and(|p| p.version == e.version);
        pinned(b).cmp(&pinned(a)).then(b.version.cmp(&a.version))
    });
    if request.locked {
        candidates.retain(|e| pin.is_some_and(|p| p.version == e.version));
    }
    let tried = !candidates.is_empty();
    for entry in candidates {
        let because = match need.chain.len() {
            1 => "requested".to_owned(),
            _ => need
                .chain
                .last()
                .map(|c| c.split(" requires ").next().unwrap_or(c).to_owned())
                .map(|by| format!("required by {by}"))
                .unwrap_or_default(),
        };
        chosen.insert(
            need.name.clone(),
            Choice {
                registry: listing.registry.clone(),
                entry: entry.clone(),
                because,
            },
        );
        let mut next = pending.clone();
        for dep in entry.dependencies.iter().filter(|d| !d.optional) {
            let mut chain = need.chain.clone();
            chain.push(format!(
                "{} {} requires {} {}",
                entry.name, entry.version, dep.name, dep.req
            ));
            next.push(Need {
                name: dep.name.clone(),
                req: dep.req.clone(),
                chain,
            });
        }
        if solve(catalog, request, next, chosen, all_needs, worst) {
            return true;
        }
        chosen.remove(&need.name);
    }
    // With candidates tried, the failure deeper down says more than "nothing worked here".
    if !tried || worst.is_none() {
        record_conflict(catalog, request, &need.name, all_needs, worst);
    }
    restore(all_needs);
    false
}

/// Why a version cannot be used regardless of requirements, if it cannot.
fn usable(entry: &IndexEntry, request: &Request<'_>, pin: Option<&Pin>) -> Result<(), String> {
    let pinned = pin.is_some_and(|p| p.version == entry.version && p.sha256 == entry.sha256);
    if entry.yanked && !pinned {
        return Err("yanked".to_owned());
    }
    if !entry.trellis.matches(request.trellis) {
        return Err(format!(
            "needs trellis {}, this is {}",
            entry.trellis, request.trellis
        ));
    }
    Ok(())
}

fn record_conflict(
    catalog: &dyn Catalog,
    request: &Request<'_>,
    name: &str,
    all_needs: &[Need],
    worst: &mut Option<ResolveError>,
) {
    let requirements: Vec<(String, Vec<String>)> = all_needs
        .iter()
        .filter(|n| n.name == name)
        .map(|n| (n.req.to_string(), n.chain.clone()))
        .collect();
    let pin = request.pins.get(name);
    let mut available: Vec<(Version, String)> = catalog
        .listings(name)
        .into_iter()
        .next()
        .map(|l| l.entries)
        .unwrap_or_default()
        .iter()
        .filter(|e| !e.yanked || pin.is_some_and(|p| p.version == e.version))
        .map(|e| {
            let why = match usable(e, request, pin) {
                Err(why) => why,
                Ok(()) => match requirements
                    .iter()
                    .find(|(req, _)| VersionReq::parse(req).is_ok_and(|r| !r.matches(&e.version)))
                {
                    Some((req, _)) => format!("does not match {req}"),
                    None => "its own dependencies conflict".to_owned(),
                },
            };
            (e.version.clone(), why)
        })
        .collect();
    available.sort_by(|a, b| b.0.cmp(&a.0));
    // The conflict with the most requirements involved explains the most.
    let replace = match worst {
        Some(ResolveError::Conflict {
            requirements: r, ..
        }) => requirements.len() >= r.len(),
        _ => true,
    };
    if replace {
        *worst = Some(ResolveError::Conflict {
            name: name.to_owned(),
            requirements,
            available,
        });
    }
}

/// Dependencies before the plugins that need them; ties by name.
fn order(chosen: &BTreeMap<String, Choice>) -> Vec<Resolved> {
    let mut out: Vec<Resolved> = Vec::new();
    let mut placed: Vec<&str> = Vec::new();
    while placed.len() < chosen.len() {
        let before = placed.len();
        for (name, choice) in chosen {
            if placed.contains(&name.as_str()) {
                continue;
            }
            let ready = choice
                .entry
                .dependencies
                .iter()
                .filter(|d| chosen.contains_key(&d.name))
                .all(|d| placed.contains(&d.name.as_str()));
            if ready {
                placed.push(name);
                out.push(Resolved {
                    registry: choice.registry.clone(),
                    entry: choice.entry.clone(),
                    because: choice.because.clone(),
                });
            }
        }
        if placed.len() == before {
            // A dependency cycle: the rest in name order (install validates cycles itself).
            for (name, choice) in chosen {
                if !placed.contains(&name.as_str()) {
                    placed.push(name);
                    out.push(Resolved {
                        registry: choice.registry.clone(),
                        entry: choice.entry.clone(),
                        because: choice.because.clone(),
                    });
                }
            }
        }
    }
    out
}

impl fmt::Display for Resolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} from {} ({})",
            self.entry.name, self.entry.version, self.registry, self.because
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::IndexDependency;

    #[derive(Default)]
    struct Fake {
        /// registry name (priority order) → entries
        registries: Vec<(String, Vec<IndexEntry>)>,
    }

    impl Fake {
        fn add(&mut self, registry: &str, name: &str, version: &str, deps: &[(&str, &str)]) {
            let entry = IndexEntry {
                name: name.to_owned(),
                version: Version::parse(version).unwrap(),
                dependencies: deps
                    .iter()
                    .map(|(n, r)| IndexDependency {
                        name: (*n).to_owned(),
                        req: VersionReq::parse(r).unwrap(),
                        optional: false,
                    })
                    .collect(),
                sha256: format!("{:0>64}", version.replace('.', "")),
                size: 1,
                trellis: VersionReq::STAR,
                capabilities: Vec::new(),
                provides: BTreeMap::new(),
                categories: Vec::new(),
                keywords: Vec::new(),
                description: String::new(),
                license: None,
                signer: None,
                trust: "unsigned".to_owned(),
                yanked: false,
                published_at: chrono::Utc::now(),
            };
            match self.registries.iter_mut().find(|(r, _)| r == registry) {
                Some((_, entries)) => entries.push(entry),
                None => self.registries.push((registry.to_owned(), vec![entry])),
            }
        }

        fn yank(&mut self, name: &str, version: &str) {
            for (_, entries) in &mut self.registries {
                for e in entries.iter_mut() {
                    if e.name == name && e.version.to_string() == version {
                        e.yanked = true;
                    }
                }
            }
        }
    }

    impl Catalog for Fake {
        fn listings(&self, name: &str) -> Vec<Listing> {
            self.registries
                .iter()
                .filter_map(|(registry, entries)| {
                    let mine: Vec<IndexEntry> =
                        entries.iter().filter(|e| e.name == name).cloned().collect();
                    (!mine.is_empty()).then(|| Listing {
                        registry: registry.clone(),
                        entries: mine,
                    })
                })
                .collect()
        }
    }

    fn run(
        fake: &Fake,
        roots: &[(&str, &str)],
        pins: &BTreeMap<String, Pin>,
        locked: bool,
    ) -> Result<Vec<String>, ResolveError> {
        let trellis = Version::new(0, 1, 0);
        let request = Request {
            roots: roots
                .iter()
                .map(|(n, r)| ((*n).to_owned(), VersionReq::parse(r).unwrap()))
                .collect(),
            trellis: &trellis,
            pins,
            locked,
        };
        resolve(fake, &request).map(|plan| {
            plan.iter()
                .map(|r| format!("{}@{}@{}", r.entry.name, r.entry.version, r.registry))
                .collect()
        })
    }

    #[test]
    fn picks_the_newest_compatible_versions_dependencies_first() {
        let mut f = Fake::default();
        f.add("main", "app", "1.0.0", &[("lib", "^1")]);
        f.add("main", "app", "1.1.0", &[("lib", "^1.2")]);
        f.add("main", "lib", "1.1.0", &[]);
        f.add("main", "lib", "1.3.0", &[]);
        f.add("main", "lib", "2.0.0", &[]);
        let plan = run(&f, &[("app", "*")], &BTreeMap::new(), false).unwrap();
        assert_eq!(plan, ["lib@1.3.0@main", "app@1.1.0@main"]);
    }

    #[test]
    fn backtracks_when_the_newest_leads_to_a_conflict() {
        let mut f = Fake::default();
        f.add("main", "app", "1.0.0", &[("lib", "^1"), ("tool", "^1")]);
        f.add("main", "tool", "1.0.0", &[("lib", "^1.0")]);
        f.add("main", "tool", "1.1.0", &[("lib", "^2")]);
        f.add("main", "lib", "1.5.0", &[]);
        f.add("main", "lib", "2.0.0", &[]);
        let plan = run(&f, &[("app", "*")], &BTreeMap::new(), false).unwrap();
        assert!(plan.contains(&"tool@1.0.0@main".to_owned()), "{plan:?}");
        assert!(plan.contains(&"lib@1.5.0@main".to_owned()), "{plan:?}");
    }

    #[test]
    fn a_conflict_is_explained_with_both_chains() {
        let mut f = Fake::default();
        f.add("main", "app", "1.0.0", &[("lib", "^1")]);
        f.add("main", "other", "1.0.0", &[("lib", "^2")]);
        f.add("main", "lib", "1.0.0", &[]);
        f.add("main", "lib", "2.0.0", &[]);
        let err = run(&f, &[("app", "*"), ("other", "*")], &BTreeMap::new(), false).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("no version of `lib`"), "{text}");
        assert!(
            text.contains("you asked for app * → app 1.0.0 requires lib ^1"),
            "{text}"
        );
        assert!(
            text.contains("you asked for other * → other 1.0.0 requires lib ^2"),
            "{text}"
        );
    }

    #[test]
    fn yanked_versions_are_skipped_unless_pinned() {
        let mut f = Fake::default();
        f.add("main", "lib", "1.0.0", &[]);
        f.add("main", "lib", "1.1.0", &[]);
        f.yank("lib", "1.1.0");
        assert_eq!(
            run(&f, &[("lib", "*")], &BTreeMap::new(), false).unwrap(),
            ["lib@1.0.0@main"]
        );
        let sha = f.listings("lib")[0].entries[1].sha256.clone();
        let pins = BTreeMap::from([(
            "lib".to_owned(),
            Pin {
                version: Version::new(1, 1, 0),
                sha256: sha,
                registry: "main".to_owned(),
            },
        )]);
        assert_eq!(
            run(&f, &[("lib", "*")], &pins, true).unwrap(),
            ["lib@1.1.0@main"]
        );
        f.yank("lib", "1.0.0");
        let err = run(&f, &[("lib", "*")], &BTreeMap::new(), false).unwrap_err();
        assert!(err.to_string().contains("no version is available"), "{err}");
    }

    #[test]
    fn the_highest_priority_registry_that_lists_a_name_owns_it() {
        let mut f = Fake::default();
        f.add("internal", "scanner", "1.0.0", &[]);
        f.add("public", "scanner", "9.0.0", &[]);
        assert_eq!(
            run(&f, &[("scanner", "*")], &BTreeMap::new(), false).unwrap(),
            ["scanner@1.0.0@internal"]
        );
    }

    #[test]
    fn locked_refuses_a_changed_checksum_or_a_missing_pin() {
        let mut f = Fake::default();
        f.add("main", "lib", "1.0.0", &[]);
        let pins = BTreeMap::from([(
            "lib".to_owned(),
            Pin {
                version: Version::new(1, 0, 0),
                sha256: "f".repeat(64),
                registry: "main".to_owned(),
            },
        )]);
        let err = run(&f, &[("lib", "*")], &pins, true).unwrap_err();
        assert!(err.to_string().contains("instead of"), "{err}");
        let err = run(&f, &[("lib", "*")], &BTreeMap::new(), true).unwrap_err();
        assert!(err.to_string().contains("not in the lockfile"), "{err}");
    }

    #[test]
    fn a_missing_dependency_names_the_chain() {
        let mut f = Fake::default();
        f.add("main", "app", "1.0.0", &[("ghost", "^1")]);
        let err = run(&f, &[("app", "*")], &BTreeMap::new(), false).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`ghost`"), "{text}");
        assert!(text.contains("app 1.0.0 requires ghost ^1"), "{text}");
    }
}
