//! The intent journal that makes a change spanning several directories (install, update,
//! remove) atomic across a crash.
//!
//! A change moves each old directory aside, puts each new one in place, then writes
//! `state.json`, the commit point. Before the first move it writes `.trellis/journal.json`
//! saying which directories move where and which transaction id the committed state will
//! carry. Whoever takes the project lock next finds the journal and settles it: when
//! `state.json` carries the id the change had committed and the moved-aside copies are
//! deleted; otherwise every directory is put back as it was. A crash between any two steps
//! therefore leaves the old project or the new one, never a plugin without its files.
//!
//! The steps can be interrupted on purpose for tests: `TRELLIS_TEST_KILL_AT=<op>:<step>`
//! aborts the process at that step (`journal`, `aside`, `placed`, `committed`).

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;
use trellis_audit::AuditEvent;

use crate::fsutil::{io_err, remove_tree, sync_dir, write_atomic};
use crate::state::ProjectState;
use crate::{Project, ProjectError};

/// The environment variable that names a step to abort at (tests only).
pub const KILL_AT_ENV: &str = "TRELLIS_TEST_KILL_AT";

/// One directory a change replaces or removes. Paths are relative to `.trellis/`, so a
/// project moved after a crash still settles.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Slot {
    pub target: PathBuf,
    /// Where the old directory is moved while the change is open.
    pub aside: PathBuf,
    /// Whether `target` existed when the journal was written.
    pub had_previous: bool,
    /// The new directory to put at `target`; `None` when the change removes it.
    pub staging: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Journal {
    /// `install` or `remove`, for messages and kill points.
    pub op: String,
    pub plugin: String,
    /// The id `state.json` carries once the change is committed.
    pub transaction: String,
    pub slots: Vec<Slot>,
}

impl Journal {
    pub(crate) fn new(op: &str, plugin: &str) -> Journal {
        Journal {
            op: op.to_owned(),
            plugin: plugin.to_owned(),
            transaction: ulid::Ulid::generate().to_string(),
            slots: Vec::new(),
        }
    }

    /// Adds a directory to replace (`staging` is `Some`) or to remove, both given as full
    /// paths inside `.trellis/`.
    pub(crate) fn slot(
        &mut self,
        project: &Project,
        target: &Path,
        staging: Option<&Path>,
    ) -> &mut Self {
        let relative = |p: &Path| p.strip_prefix(&project.dir).unwrap_or(p).to_path_buf();
        let parent = target.parent().unwrap_or(&project.dir);
        let aside = parent.join(format!(".aside-{}", ulid::Ulid::generate()));
        self.slots.push(Slot {
            target: relative(target),
            aside: relative(&aside),
            had_previous: target.exists(),
            staging: staging.map(relative),
        });
        self
    }
}

impl Project {
    fn journal_path(&self) -> PathBuf {
        self.dir.join("journal.json")
    }

    fn kill_point(&self, op: &str, step: &str) {
        if (self.env)(KILL_AT_ENV).is_some_and(|at| at == format!("{op}:{step}")) {
            std::process::abort();
        }
    }

    /// Carries out a journalled change: the moves, then `commit` (which must write `state`
    /// with the journal's transaction id), then the clean-up. Any error before the commit puts
    /// everything back. The caller holds the project lock.
    pub(crate) fn apply_journal(
        &self,
        journal: &Journal,
        state: &mut ProjectState,
    ) -> Result<(), ProjectError> {
        let bytes = serde_json::to_vec_pretty(journal).map_err(|e| ProjectError::Io {
            path: self.journal_path(),
            source: std::io::Error::other(e),
        })?;
        write_atomic(&self.journal_path(), &bytes)?;
        self.kill_point(&journal.op, "journal");
        let moved = (|| -> Result<(), ProjectError> {
            for slot in &journal.slots {
                let (target, aside) = (self.dir.join(&slot.target), self.dir.join(&slot.aside));
                if slot.had_previous {
                    fs::rename(&target, &aside).map_err(io_err(&target))?;
                }
            }
            self.kill_point(&journal.op, "aside");
            for slot in &journal.slots {
                let target = self.dir.join(&slot.target);
                if let Some(staging) = &slot.staging {
                    if let Some(parent) = target.parent() {
                        fs::create_dir_all(parent).map_err(io_err(parent))?;
                    }
                    let staging = self.dir.join(staging);
                    fs::rename(&staging, &target).map_err(io_err(&staging))?;
                    sync_dir(target.parent().unwrap_or(&self.dir)).map_err(io_err(&target))?;
                }
            }
            self.kill_point(&journal.op, "placed");
            state.transaction = Some(journal.transaction.clone());
            self.commit(state)
        })();
        if let Err(e) = moved {
            // Nothing is committed: put back what moved. A failure here leaves the journal for
            // the next command to finish the rollback.
            if self.roll_back(journal).is_ok() {
                let _ = fs::remove_file(self.journal_path());
            }
            return Err(e);
        }
        self.kill_point(&journal.op, "committed");
        // Committed: a copy that cannot be deleted now is deleted when the next command
        // settles the journal, and must not make this change look failed.
        if let Err(e) = self.roll_forward(journal) {
            tracing::warn!(error = %e, "could not clean up after a committed change; the next command retries");
        }
        Ok(())
    }

    /// Settles an interrupted change before a read that takes no lock (list, info, start), so
    /// that it never sees a plugin whose files are aside.
    pub(crate) fn settle_before_read(&self) -> Result<(), ProjectError> {
        if self.journal_path().exists() {
            drop(self.lock()?);
        }
        Ok(())
    }

    /// Settles a change a crash interrupted; called with the project lock held.
    pub(crate) fn settle_journal(&self) -> Result<(), ProjectError> {
        let path = self.journal_path();
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let journal: Journal =
            serde_json::from_slice(&text).map_err(|e| ProjectError::CorruptState {
                path: path.clone(),
                reason: format!(
                    "{e}; it records a change to a plugin that was interrupted: compare .trellis/plugins with state.json by hand, then delete this file"
                ),
            })?;
        let committed = self.state()?.transaction.as_deref() == Some(&journal.transaction);
        let outcome = if committed {
            tracing::warn!(plugin = %journal.plugin, op = %journal.op, "finishing an interrupted change that had committed");
            self.roll_forward(&journal)
        } else {
            tracing::warn!(plugin = %journal.plugin, op = %journal.op, "undoing an interrupted change");
            self.roll_back(&journal)
                .and_then(|()| fs::remove_file(&path).map_err(io_err(&path)))
        };
        outcome?;
        // The interrupted command never wrote its own record: say what became of its change.
        self.audit.record(
            AuditEvent::new(
                "plugin.recovered",
                if committed {
                    "completed"
                } else {
                    "rolled back"
                },
            )
            .plugin(&journal.plugin)
            .attempted(&journal.op)
            .detail("transaction", json!(journal.transaction)),
        );
        Ok(())
    }

    fn roll_back(&self, journal: &Journal) -> Result<(), ProjectError> {
        for slot in &journal.slots {
            let (target, aside) = (self.dir.join(&slot.target), self.dir.join(&slot.aside));
            if aside.exists() {
                remove_tree(&target)?;
                fs::rename(&aside, &target).map_err(io_err(&aside))?;
            } else if !slot.had_previous {
                // Whatever is at the target was placed by this change.
                remove_tree(&target)?;
            }
            // A previous directory with no aside copy was never moved: it is still in place.
            if let Some(staging) = &slot.staging {
                remove_tree(&self.dir.join(staging))?;
            }
            if let Some(parent) = target.parent() {
                sync_dir(parent).map_err(io_err(parent))?;
            }
        }
        Ok(())
    }

    fn roll_forward(&self, journal: &Journal) -> Result<(), ProjectError> {
        for slot in &journal.slots {
            remove_tree(&self.dir.join(&slot.aside))?;
            if let Some(parent) = self.dir.join(&slot.target).parent()
                && parent != self.dir.join("plugins")
                && parent != self.dir.join("packages")
            {
                // An emptied @scope directory; failure means other plugins share the scope.
                let _ = fs::remove_dir(parent);
            }
        }
        let path = self.journal_path();
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&path)(e)),
            _ => Ok(()),
        }
    }
}
