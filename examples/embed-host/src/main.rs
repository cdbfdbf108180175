//! A host program that embeds Trellis: it declares two extension points, registers two native
//! plugins, calls the hooks and subscribes to events. Run it with `cargo run -p embed-host`.
//!
//! The test suite runs it too (scripts/test.sh), and it exits non-zero if any result is not
//! what the comments promise, so this example cannot rot.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::json;
use trellis_core::{EventBus, EventLog, HookImpl, HookSpec, PluginManager, PluginRegistration};

/// What the `review_file` hook receives.
#[derive(Serialize, Deserialize)]
struct ReviewArgs {
    path: String,
    content: String,
}

/// What each implementation of `review_file` returns.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Finding {
    rule: String,
    line: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manager = PluginManager::new();

    // 1. Two extension points. `review_file` collects findings from every plugin;
    //    `choose_formatter` stops at the first plugin that answers (pluggy's firstresult).
    manager.add_hookspecs([
        HookSpec::new("review_file").arg_schema(json!({
            "type": "object",
            "required": ["path", "content"],
            "properties": {"path": {"type": "string"}, "content": {"type": "string"}}
        })),
        HookSpec::new("choose_formatter").firstresult(),
    ])?;

    // 2. Two native plugins. `secrets` finds hard-coded passwords; `todos` finds TODO markers
    //    and, being asked to run first, also picks the formatter.
    manager.register(
        PluginRegistration::new("secrets")
            .with(HookImpl::typed("review_file", |args: &ReviewArgs| {
                let finding = args
                    .content
                    .lines()
                    .position(|l| l.contains("password ="))
                    .map(|i| Finding {
                        rule: "hardcoded-password".into(),
                        line: i + 1,
                    });
                Ok::<_, String>(finding)
            }))
            .with(HookImpl::new("choose_formatter", |_| {
                Ok(Some(json!("sarif")))
            })),
    )?;
    manager.register(
        PluginRegistration::new("todos")
            .with(HookImpl::typed("review_file", |args: &ReviewArgs| {
                let finding = args
                    .content
                    .lines()
                    .position(|l| l.contains("TODO"))
                    .map(|i| Finding {
                        rule: "todo".into(),
                        line: i + 1,
                    });
                Ok::<_, String>(finding)
            }))
            .with(HookImpl::new("choose_formatter", |_| Ok(Some(json!("text")))).tryfirst()),
    )?;
    manager.check_pending()?;

    // 3. Events: the host subscribes to everything under `review.` and logs to a directory.
    let log_dir = tempfile::tempdir()?;
    let bus = EventBus::with_log(EventLog::new(log_dir.path()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    bus.subscribe("review.**", move |event| {
        sink.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event.topic.clone());
    })?;

    // 4. Call the hooks, typed on the way in and out.
    let review = manager.typed::<ReviewArgs, Finding>("review_file")?;
    let args = ReviewArgs {
        path: "src/auth.py".into(),
        content: "import os\npassword = 'hunter2'\n# TODO: rotate\n".into(),
    };
    let findings = review.call(&args)?.values;
    // Last registered runs first (pluggy's LIFO order): `todos`, then `secrets`.
    println!("findings for {}:", args.path);
    for f in &findings {
        println!("  line {}: {}", f.line, f.rule);
    }
    let formatter = manager.call("choose_formatter", &json!({}))?.into_first();
    println!(
        "formatter: {}",
        formatter
            .as_ref()
            .and_then(|v| v.as_str())
            .unwrap_or("none")
    );

    bus.emit(
        "review.file.completed",
        json!({"path": args.path, "findings": findings.len()}),
    )?;
    bus.emit("plugin.enabled", json!({"plugin": "not-a-review-event"}))?;
    let topics = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    println!("events seen by the host: {topics:?}");

    // A bad call is refused with the schema violation, not passed to plugins.
    let refused = manager.call("review_file", &json!({"path": 42}));
    if let Err(e) = &refused {
        println!("bad arguments refused: {e}");
    }

    let expected = vec![
        Finding {
            rule: "todo".into(),
            line: 3,
        },
        Finding {
            rule: "hardcoded-password".into(),
            line: 2,
        },
    ];
    let ok = findings == expected
        && formatter == Some(json!("text"))
        && topics == vec!["review.file.completed".to_owned()]
        && refused.is_err()
        && EventLog::new(log_dir.path()).read(None)?.len() == 2;
    if !ok {
        return Err("the example did not behave as documented".into());
    }
    Ok(())
}
