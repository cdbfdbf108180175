//! `findings-gate`: an example hook wrapper. `wrap_before` runs before the other
//! implementations of `workflow.phase.implement` and keeps the phase's name as its state;
//! `wrap_after` sees their outcome and fails the call when their results report more findings
//! than the configuration allows.

use trellis_plugin_sdk::{Error, Outcome, Plugin, Value, config, export_plugin, json};

/// The hook this plugin wraps.
const HOOK: &str = "workflow.phase.implement";

struct FindingsGate;

/// Findings reported by the results: the lengths of their `findings` lists, added up.
fn count_findings(results: &[Value]) -> usize {
    results
        .iter()
        .filter_map(|r| r.get("findings").and_then(Value::as_array))
        .map(Vec::len)
        .sum()
}

impl Plugin for FindingsGate {
    fn wrap_before(hook: &str, args: &Value) -> Result<Value, Error> {
        if hook != HOOK {
            return Err(Error::not_found(format!("wrapper of hook `{hook}`")));
        }
        Ok(json!({ "phase": args.get("phase").cloned().unwrap_or(Value::Null) }))
    }

    fn wrap_after(
        _hook: &str,
        _args: Value,
        state: Value,
        outcome: Outcome,
    ) -> Result<Option<Outcome>, Error> {
        let Outcome::Results(mut results) = outcome else {
            return Ok(None);
        };
        let allowed = config::get()
            .get("max_findings")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let findings = count_findings(&results);
        if findings as u64 > allowed {
            return Ok(Some(Outcome::Error(format!(
                "{findings} findings in phase {}, more than max_findings ({allowed})",
                state["phase"]
            ))));
        }
        results.push(json!({ "gate": "passed", "findings": findings }));
        Ok(Some(Outcome::Results(results)))
    }
}

export_plugin!(FindingsGate);
