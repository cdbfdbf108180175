//! Backlog.md task files: where they live, how they are named, what they hold.
//!
//! Tasks live in `<project>/backlog/tasks/` as `task-<N> - <Title-With-Dashes>.md`: YAML front
//! matter, then a `## Description` section between Backlog.md's section markers. Ids are
//! allocated as one more than the largest id in `backlog/tasks/` and `backlog/completed/`.
//! Everything a plugin supplies is checked so that it can only ever become text inside one
//! task file: never a path, never extra front matter keys.
//!
//! What this crate must not know about: plugins' capabilities, the audit log, events or any
//! runtime. The host API (`trellis-host-api`) checks a plugin's grant, calls this crate, and
//! audits and announces what it did.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::Value;

/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest description, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 64 << 10;
/// Longest label or status, in characters.
pub const MAX_LABEL_CHARS: usize = 64;
/// Most labels on one task.
pub const MAX_LABELS: usize = 32;
/// Longest title part of a file name, in characters.
const MAX_FILE_TITLE_CHARS: usize = 80;
/// Files larger than this are not read by `list_tasks`.
const MAX_TASK_FILE_BYTES: u64 = 1 << 20;

const DESCRIPTION_BEGIN: &str = "<!-- SECTION:DESCRIPTION:BEGIN -->";
const DESCRIPTION_END: &str = "<!-- SECTION:DESCRIPTION:END -->";

/// A task as read back (the WIT `task` record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    pub id: String,
    pub title: String,
    pub status: String,
    pub labels: Vec<String>,
    pub description: String,
}

/// What a plugin asks to create (the WIT `new-task` record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTaskInfo {
    pub title: String,
    pub status: Option<String>,
    pub labels: Vec<String>,
    pub description: String,
}

/// Why a backlog operation failed; maps onto the WIT `error` cases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BacklogError {
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    Failed(String),
}

/// A created task: what it says and where it was written.
#[derive(Debug, Clone)]
pub struct Created {
    pub task: TaskInfo,
    pub path: PathBuf,
}

/// Serializes id allocation within this process (two plugins creating tasks at once must not
/// get the same id). Another process writing tasks at the same moment could still collide.
static ALLOCATE: Mutex<()> = Mutex::new(());

fn tasks_dir(root: &Path) -> PathBuf {
    root.join("backlog").join("tasks")
}

/// Refuses a backlog whose directories are symbolic links: a link planted in a repository
/// (`backlog -> .trellis`, `backlog/tasks -> ~/notes`) would make task files land in, or be
/// read from, wherever it points.
fn check_real_dirs(root: &Path) -> Result<(), BacklogError> {
    for rel in ["backlog", "backlog/tasks", "backlog/completed"] {
        let path = root.join(rel);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(BacklogError::Failed(format!(
                "{} is a symbolic link; the backlog must be real directories inside the project",
                path.display()
            )));
        }
    }
    Ok(())
}

/// The numeric id of a task file name (`task-12 - Title.md` → 12, `task-3.1 - x.md` → 3).
pub fn task_number(file_name: &str) -> Option<u64> {
    let lower = file_name.to_ascii_lowercase();
    let rest = lower.strip_prefix("task-")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// One more than the largest task id in `backlog/tasks/` and `backlog/completed/`.
pub fn next_task_number(root: &Path) -> u64 {
    let mut max = 0;
    for dir in [tasks_dir(root), root.join("backlog").join("completed")] {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if let Some(n) = entry.file_name().to_str().and_then(task_number) {
                max = max.max(n);
            }
        }
    }
    max + 1
}

/// The title as it appears in a file name: characters that are not allowed in file names on
/// some platform (`/\:*?"<>|`) and control characters dropped, whitespace runs turned into one
/// `-`, at most 80 characters.
pub fn file_title(title: &str) -> String {
    let mut out = String::new();
    let mut pending_dash = false;
    for c in title.chars() {
        if matches!(c, '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|') || c.is_control() {
            continue;
        }
        if c.is_whitespace() {
            pending_dash = !out.is_empty();
            continue;
        }
        if pending_dash {
            out.push('-');
            pending_dash = false;
        }
        out.push(c);
    }
    let mut out: String = out.chars().take(MAX_FILE_TITLE_CHARS).collect();
    // No hidden files, no `..`.
    while out.starts_with('.') {
        out.remove(0);
    }
    let out = out.trim_end_matches(['.', '-']).to_owned();
    if out.is_empty() {
        "task".to_owned()
    } else {
        out
    }
}

/// `task-<N> - <Title-With-Dashes>.md`.
pub fn task_file_name(number: u64, title: &str) -> String {
    format!("task-{number} - {}.md", file_title(title))
}

fn single_quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A YAML scalar: plain when it is unambiguous, single-quoted otherwise.
fn scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '_' | '-' | '.'))
        && !s.ends_with(' ')
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n" | "~"
        )
        && s.parse::<f64>().is_err();
    if plain {
        s.to_owned()
    } else {
        single_quoted(s)
    }
}

fn check_line(what: &str, value: &str, max_chars: usize) -> Result<(), BacklogError> {
    if value.trim().is_empty() {
        return Err(BacklogError::InvalidInput(format!("the {what} is empty")));
    }
    if value.chars().count() > max_chars {
        return Err(BacklogError::InvalidInput(format!(
            "the {what} is longer than {max_chars} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(BacklogError::InvalidInput(format!(
            "the {what} contains a line break or control character"
        )));
    }
    Ok(())
}

/// Checks a new task and fills in defaults: status `To Do`, label `plugin:<name>` first.
pub fn normalize(plugin: &str, new: &NewTaskInfo) -> Result<NewTaskInfo, BacklogError> {
    let title = new.title.trim().to_owned();
    check_line("title", &title, MAX_TITLE_CHARS)?;
    let status = new
        .status
        .as_deref()
        .map(str::trim)
        .unwrap_or("To Do")
        .to_owned();
    check_line("status", &status, MAX_LABEL_CHARS)?;
    let mut labels = vec![format!("plugin:{plugin}")];
    for label in &new.labels {
        let label = label.trim();
        check_line("label", label, MAX_LABEL_CHARS)?;
        if !labels.iter().any(|l| l == label) {
            labels.push(label.to_owned());
        }
    }
    if labels.len() > MAX_LABELS {
        return Err(BacklogError::InvalidInput(format!(
            "a task has at most {MAX_LABELS} labels"
        )));
    }
    if new.description.len() > MAX_DESCRIPTION_BYTES {
        return Err(BacklogError::InvalidInput(format!(
            "the description is longer than {MAX_DESCRIPTION_BYTES} bytes"
        )));
    }
    if new.description.contains("<!-- SECTION:") {
        return Err(BacklogError::InvalidInput(
            "the description contains a Backlog.md section marker (`<!-- SECTION:`)".into(),
        ));
    }
    Ok(NewTaskInfo {
        title,
        status: Some(status),
        labels,
        description: new.description.trim_end().to_owned(),
    })
}

/// The file content of a task (front matter, then the description section).
pub fn render_task(id: &str, task: &NewTaskInfo, created: &str) -> String {
    let labels: Vec<String> = task.labels.iter().map(|l| scalar(l)).collect();
    let status = task.status.as_deref().unwrap_or("To Do");
    format!(
        "---\nid: {id}\ntitle: {}\nstatus: {}\nassignee: []\ncreated_date: {}\nlabels: [{}]\ndependencies: []\n---\n\n## Description\n\n{DESCRIPTION_BEGIN}\n{}\n{DESCRIPTION_END}\n",
        single_quoted(&task.title),
        scalar(status),
        single_quoted(created),
        labels.join(", "),
        task.description,
    )
}

/// Creates a task file for `plugin`; returns what was written and where.
pub fn create_task(root: &Path, plugin: &str, new: &NewTaskInfo) -> Result<Created, BacklogError> {
    let task = normalize(plugin, new)?;
    check_real_dirs(root)?;
    let dir = tasks_dir(root);
    let failed = |what: &str, path: &Path, e: std::io::Error| {
        BacklogError::Failed(format!("cannot {what} {}: {e}", path.display()))
    };
    fs::create_dir_all(&dir).map_err(|e| failed("create", &dir, e))?;
    let created = chrono::Local::now().format("%Y-%m-%d %H:%M").to_string();
    let _guard = ALLOCATE.lock().unwrap_or_else(|p| p.into_inner());
    let mut number = next_task_number(root);
    // `create_new` never overwrites; if the name is taken (another process), take the next id.
    for _ in 0..100 {
        let id = format!("task-{number}");
        let path = dir.join(task_file_name(number, &task.title));
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut file) => {
                let text = render_task(&id, &task, &created);
                file.write_all(text.as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|e| failed("write", &path, e))?;
                return Ok(Created {
                    task: TaskInfo {
                        id,
                        title: task.title.clone(),
                        status: task.status.clone().unwrap_or_default(),
                        labels: task.labels.clone(),
                        description: task.description.clone(),
                    },
                    path,
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => number += 1,
            Err(e) => return Err(failed("create", &path, e)),
        }
    }
    Err(BacklogError::Failed(
        "cannot find a free task id in backlog/tasks".into(),
    ))
}

/// Splits `---\n<yaml>\n---\n<body>`; `None` when the text has no front matter.
fn split_front_matter(text: &str) -> Option<(&str, &str)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let rest = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))?;
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        if line.trim_end() == "---" {
            return Some((&rest[..offset], &rest[offset + line.len()..]));
        }
        offset += line.len();
    }
    None
}

fn description_of(body: &str) -> String {
    if let Some(start) = body.find(DESCRIPTION_BEGIN) {
        let after = &body[start + DESCRIPTION_BEGIN.len()..];
        let end = after.find(DESCRIPTION_END).unwrap_or(after.len());
        return after[..end].trim().to_owned();
    }
    // Older files: the text under `## Description` up to the next heading.
    let Some(start) = body.find("## Description") else {
        return String::new();
    };
    let after = &body[start + "## Description".len()..];
    let end = after.find("\n## ").unwrap_or(after.len());
    after[..end].trim().to_owned()
}

fn text_of(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Parses one task file; `None` when it has no readable front matter.
pub fn parse_task(text: &str) -> Option<TaskInfo> {
    let (yaml, body) = split_front_matter(text)?;
    let meta: Value = serde_norway::from_str(yaml).ok()?;
    let meta = meta.as_object()?;
    let labels = match meta.get("labels") {
        Some(Value::Array(items)) => items.iter().map(|v| text_of(Some(v))).collect(),
        Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
        _ => Vec::new(),
    };
    Some(TaskInfo {
        id: text_of(meta.get("id")),
        title: text_of(meta.get("title")),
        status: text_of(meta.get("status")),
        labels,
        description: description_of(body),
    })
}

/// Every task in `backlog/tasks/` (optionally only those with `label`), by id. Files without
/// readable front matter are skipped with a warning.
pub fn list_tasks(root: &Path, label: Option<&str>) -> Result<Vec<TaskInfo>, BacklogError> {
    check_real_dirs(root)?;
    let dir = tasks_dir(root);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(BacklogError::Failed(format!(
                "cannot read {}: {e}",
                dir.display()
            )));
        }
    };
    let mut tasks = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("md") {
            continue;
        }
        if entry
            .metadata()
            .map_or(true, |m| !m.is_file() || m.len() > MAX_TASK_FILE_BYTES)
        {
            continue;
        }
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        match parse_task(&text) {
            Some(task) => {
                if label.is_none_or(|l| task.labels.iter().any(|t| t == l)) {
                    tasks.push(task);
                }
            }
            None => {
                tracing::warn!(file = %path.display(), "skipping a backlog task without readable front matter")
            }
        }
    }
    tasks.sort_by(|a, b| {
        let key = |t: &TaskInfo| (task_number(&t.id).unwrap_or(u64::MAX), t.id.clone());
        key(a).cmp(&key(b))
    });
    Ok(tasks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(title: &str) -> NewTaskInfo {
        NewTaskInfo {
            title: title.into(),
            status: None,
            labels: vec!["security".into()],
            description: "Found a secret in `config.py`.\nRotate it.".into(),
        }
    }

    #[test]
    fn file_names() {
        assert_eq!(
            task_file_name(7, "Fix login bug"),
            "task-7 - Fix-login-bug.md"
        );
        assert_eq!(
            task_file_name(1, "Secret in src/app.py: AWS key?"),
            "task-1 - Secret-in-srcapp.py-AWS-key.md"
        );
        assert_eq!(task_file_name(2, r#"a\b*c"d<e>f|g"#), "task-2 - abcdefg.md");
        assert_eq!(
            task_file_name(3, "../../etc/passwd"),
            "task-3 - etcpasswd.md"
        );
        assert_eq!(
            task_file_name(4, "  spaced   out  "),
            "task-4 - spaced-out.md"
        );
        assert_eq!(task_file_name(5, "///"), "task-5 - task.md");
        assert!(task_file_name(6, &"x".repeat(500)).len() < 100);
    }

    #[test]
    fn numbers() {
        assert_eq!(task_number("task-12 - Title.md"), Some(12));
        assert_eq!(task_number("TASK-3.1 - Sub.md"), Some(3));
        assert_eq!(task_number("task-x.md"), None);
        assert_eq!(task_number("readme.md"), None);
    }

    #[test]
    fn ids_continue_after_tasks_and_completed() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(next_task_number(dir.path()), 1);
        fs::create_dir_all(dir.path().join("backlog/tasks")).unwrap();
        fs::create_dir_all(dir.path().join("backlog/completed")).unwrap();
        fs::write(dir.path().join("backlog/tasks/task-3 - A.md"), "").unwrap();
        fs::write(dir.path().join("backlog/completed/task-9 - B.md"), "").unwrap();
        assert_eq!(next_task_number(dir.path()), 10);
    }

    #[test]
    fn create_then_list_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let created = create_task(
            dir.path(),
            "security-scanner",
            &new("Hard-coded AWS key in config.py"),
        )
        .unwrap();
        assert_eq!(created.task.id, "task-1");
        assert_eq!(created.task.status, "To Do");
        assert_eq!(
            created.task.labels,
            vec!["plugin:security-scanner", "security"]
        );
        assert_eq!(
            created.path.file_name().unwrap().to_str().unwrap(),
            "task-1 - Hard-coded-AWS-key-in-config.py.md"
        );
        let text = fs::read_to_string(&created.path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "---");
        assert_eq!(lines[1], "id: task-1");
        assert_eq!(lines[2], "title: 'Hard-coded AWS key in config.py'");
        assert_eq!(lines[3], "status: To Do");
        assert_eq!(lines[4], "assignee: []");
        assert!(
            lines[5].starts_with("created_date: '")
                && lines[5].len() == "created_date: 'YYYY-MM-DD HH:MM'".len(),
            "{}",
            lines[5]
        );
        assert_eq!(lines[6], "labels: ['plugin:security-scanner', security]");
        assert_eq!(lines[7], "dependencies: []");
        assert_eq!(lines[8], "---");
        assert_eq!(lines[9], "");
        assert_eq!(lines[10], "## Description");
        assert_eq!(lines[11], "");
        assert_eq!(lines[12], DESCRIPTION_BEGIN);
        assert_eq!(lines[13], "Found a secret in `config.py`.");
        assert_eq!(lines[15], DESCRIPTION_END);

        let second = create_task(
            dir.path(),
            "other",
            &NewTaskInfo {
                title: "It's 'quoted' & odd: yes".into(),
                status: Some("In Progress".into()),
                labels: vec!["yes".into(), "a,b".into(), "plugin:other".into()],
                description: String::new(),
            },
        )
        .unwrap();
        assert_eq!(second.task.id, "task-2");

        let all = list_tasks(dir.path(), None).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0], created.task);
        assert_eq!(all[1].title, "It's 'quoted' & odd: yes");
        assert_eq!(all[1].status, "In Progress");
        assert_eq!(all[1].labels, vec!["plugin:other", "yes", "a,b"]);
        assert_eq!(all[1].description, "");
        let only = list_tasks(dir.path(), Some("security")).unwrap();
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].id, "task-1");
    }

    #[test]
    fn list_tolerates_unknown_keys_and_other_layouts() {
        let dir = tempfile::tempdir().unwrap();
        let tasks = dir.path().join("backlog/tasks");
        fs::create_dir_all(&tasks).unwrap();
        fs::write(
            tasks.join("task-10 - Human.md"),
            "---\nid: task-10\ntitle: Written by hand\nstatus: Done\nassignee: ['@alice']\nreporter: bob\npriority: high\nlabels:\n  - ui\n  - bug\nparent_task_id: task-2\n---\n\n## Description\n\nOld style, no markers.\n\n## Acceptance Criteria\n\n- [ ] x\n",
        )
        .unwrap();
        fs::write(tasks.join("task-11 - Broken.md"), "no front matter at all").unwrap();
        fs::write(tasks.join("notes.txt"), "---\nid: x\n---\n").unwrap();
        let all = list_tasks(dir.path(), None).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].id, "task-10");
        assert_eq!(all[0].title, "Written by hand");
        assert_eq!(all[0].labels, vec!["ui", "bug"]);
        assert_eq!(all[0].description, "Old style, no markers.");
        assert_eq!(next_task_number(dir.path()), 12);
    }

    #[test]
    fn hostile_input_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let bad = |t: NewTaskInfo| match create_task(dir.path(), "p", &t) {
            Err(BacklogError::InvalidInput(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(bad(new("")).contains("title is empty"));
        assert!(bad(new("a\nstatus: Done")).contains("line break"));
        assert!(bad(new(&"x".repeat(MAX_TITLE_CHARS + 1))).contains("longer"));
        let mut t = new("ok");
        t.status = Some("Done\nlabels: [x]".into());
        assert!(bad(t).contains("status"));
        let mut t = new("ok");
        t.labels = vec!["a\nb".into()];
        assert!(bad(t).contains("label"));
        let mut t = new("ok");
        t.description = format!("x\n{DESCRIPTION_END}\n---\n");
        assert!(bad(t).contains("section marker"));
        let mut t = new("ok");
        t.labels = (0..40).map(|i| format!("l{i}")).collect();
        assert!(bad(t).contains("labels"));
        assert!(
            !dir.path().join("backlog/tasks").exists()
                || fs::read_dir(dir.path().join("backlog/tasks"))
                    .unwrap()
                    .count()
                    == 0
        );
    }

    #[test]
    fn scalars() {
        assert_eq!(scalar("To Do"), "To Do");
        assert_eq!(scalar("security"), "security");
        assert_eq!(scalar("yes"), "'yes'");
        assert_eq!(scalar("1.5"), "'1.5'");
        assert_eq!(scalar("plugin:x"), "'plugin:x'");
        assert_eq!(scalar("@scope"), "'@scope'");
        assert_eq!(scalar("it's"), "'it''s'");
    }

    #[cfg(unix)]
    #[test]
    fn a_backlog_that_is_a_link_is_refused() {
        let project = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(project.path().join(".trellis")).unwrap();
        std::os::unix::fs::symlink(".trellis", project.path().join("backlog")).unwrap();
        let new = NewTaskInfo {
            title: "t".into(),
            status: None,
            labels: vec![],
            description: String::new(),
        };
        assert!(create_task(project.path(), "p", &new).is_err());
        assert!(
            std::fs::read_dir(project.path().join(".trellis"))
                .unwrap()
                .next()
                .is_none()
        );
        std::fs::remove_file(project.path().join("backlog")).unwrap();
        std::fs::create_dir_all(project.path().join("backlog")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), project.path().join("backlog/tasks")).unwrap();
        assert!(list_tasks(project.path(), None).is_err());
        assert!(create_task(project.path(), "p", &new).is_err());
    }
}
