//! Backlog.md tasks in the project's `backlog/tasks/`. Reading needs the `backlog.read`
//! capability, writing `backlog.write`.
//!
//! ```no_run
//! # fn main() -> Result<(), trellis_plugin_sdk::Error> {
//! use trellis_plugin_sdk::backlog::{self, NewTask};
//! let task = backlog::create_task(
//!     NewTask::new("Rotate the leaked key").label("security").description("Found in src/app.py"),
//! )?;
//! trellis_plugin_sdk::log::info(format!("created {}", task.id));
//! # Ok(()) }
//! ```

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::bindings::trellis::plugin::backlog as wit;

/// A task in the backlog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// The task id, e.g. `task-12`.
    pub id: String,
    /// One-line title.
    pub title: String,
    /// Status, e.g. `To Do`, `In Progress`, `Done`.
    pub status: String,
    /// Labels; tasks a plugin created carry `plugin:<name>`.
    pub labels: Vec<String>,
    /// Markdown description.
    pub description: String,
}

/// A task to create.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTask {
    /// One-line title.
    pub title: String,
    /// Status; `To Do` when `None`.
    pub status: Option<String>,
    /// Labels; the host always adds `plugin:<name>`.
    pub labels: Vec<String>,
    /// Markdown description.
    pub description: String,
}

impl NewTask {
    /// A task titled `title`, status `To Do`, no labels, empty description.
    pub fn new(title: impl Into<String>) -> Self {
        NewTask {
            title: title.into(),
            ..NewTask::default()
        }
    }

    /// Adds a label.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.labels.push(label.into());
        self
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Sets the status.
    pub fn status(mut self, status: impl Into<String>) -> Self {
        self.status = Some(status.into());
        self
    }
}

impl From<wit::Task> for Task {
    fn from(t: wit::Task) -> Self {
        Task {
            id: t.id,
            title: t.title,
            status: t.status,
            labels: t.labels,
            description: t.description,
        }
    }
}

impl From<NewTask> for wit::NewTask {
    fn from(t: NewTask) -> Self {
        wit::NewTask {
            title: t.title,
            status: t.status,
            labels: t.labels,
            description: t.description,
        }
    }
}

/// Creates a task and returns it as stored (with its id and final labels).
/// [`Error::Denied`] with capability `backlog.write` without it.
pub fn create_task(task: NewTask) -> Result<Task, Error> {
    wit::create_task(&task.into())
        .map(Task::from)
        .map_err(Error::from)
}

/// The tasks, all of them or those carrying `label`.
/// [`Error::Denied`] with capability `backlog.read` without it.
pub fn list_tasks(label: Option<&str>) -> Result<Vec<Task>, Error> {
    wit::list_tasks(label)
        .map(|tasks| tasks.into_iter().map(Task::from).collect())
        .map_err(Error::from)
}
