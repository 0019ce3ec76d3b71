//! Finding the line of a mistake in a scenario's text from where [`Invalid`] says it is
//! (`[[event]] #2`, `field at`): scenario files are written by hand as arrays of tables,
//! one `[[section]]` header per entry and one `key = value` per line, so the entry's
//! header and the field's key are enough to point at the line.
use crate::error::Invalid;

/// The line (from 1) of the mistake's field, else of its entry; `None` when the text
/// says it (a TOML syntax error) or neither can be found.
pub(crate) fn line_of(text: &str, mistake: &Invalid) -> Option<usize> {
    if mistake.problem.contains(" line ") || mistake.problem.contains("at line") {
        return None;
    }
    let lines: Vec<&str> = text.lines().collect();
    let field = mistake
        .at
        .iter()
        .rev()
        .find_map(|p| p.strip_prefix("field "))
        .map(str::to_string)
        .or_else(|| backticked_field(&mistake.problem));
    let (from, to) = match mistake.at.first().and_then(|p| entry_lines(&lines, p)) {
        Some(range) => range,
        // Top level: from the start to the first header.
        None => (
            0,
            lines
                .iter()
                .position(|l| l.trim_start().starts_with('['))
                .unwrap_or(lines.len()),
        ),
    };
    let header = mistake.at.first().is_some_and(|p| p.starts_with('[')).then_some(from);
    let field_line = field.and_then(|f| {
        (from..to).find(|&i| {
            let l = lines[i].trim_start();
            l.strip_prefix(f.as_str())
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
    });
    field_line.or(header).map(|i| i + 1)
}

/// `unknown field `floor`, expected …` → `floor`.
fn backticked_field(problem: &str) -> Option<String> {
    let rest = problem.split_once("field `")?.1;
    Some(rest.split_once('`')?.0.to_string())
}

/// The lines of the entry `place` names: `[[event]] #2`, `[[lift]] "L-1"`, `[config]`
/// (its header line, and the line of the next header that is not part of it).
fn entry_lines(lines: &[&str], place: &str) -> Option<(usize, usize)> {
    let is_header = |i: usize| lines[i].trim_start().starts_with('[');
    if let Some(end) = place.strip_prefix("[[").and_then(|p| p.find("]]")) {
        let header = &place[..end + 4];
        let rest = place[end + 4..].trim();
        let end_of = |start: usize| (start + 1..lines.len()).find(|&i| is_header(i)).unwrap_or(lines.len());
        let mut starts = (0..lines.len()).filter(|&i| lines[i].trim() == header);
        let start = if let Some(n) = rest.strip_prefix('#') {
            let n: usize = n.split_whitespace().next()?.parse().ok()?;
            starts.nth(n.checked_sub(1)?)?
        } else if let Some(id) = rest.strip_prefix('"').and_then(|r| r.split('"').next()) {
            let quoted = format!("\"{id}\"");
            starts.find(|&s| {
                lines[s + 1..end_of(s)]
                    .iter()
                    .any(|l| l.trim_start().starts_with("id") && l.contains(&quoted))
            })?
        } else {
            starts.next()?
        };
        return Some((start, end_of(start)));
    }
    // A table and its sub-tables: `[config]`, `[config.alerts]`.
    let name = place.strip_prefix('[')?.split(']').next()?;
    let part_of = |i: usize| {
        let l = lines[i].trim();
        l.strip_prefix('[')
            .and_then(|l| l.strip_prefix(name))
            .is_some_and(|rest| rest.starts_with(']') || rest.starts_with('.'))
    };
    let start = (0..lines.len()).find(|&i| part_of(i))?;
    let end = (start + 1..lines.len())
        .find(|&i| is_header(i) && !part_of(i))
        .unwrap_or(lines.len());
    Some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "start = \"x\"\nduration = \"10m\"\n\n[[lift]]\nid = \"L-1\"\nfloors = 6\n\n[[lift]]\nid = \"L-2\"\nfloor = 6\n\n[[event]]\nat = \"1m\"\n\n[[event]]\nat = \"1 minute\"\n[config.alerts]\nx = 1\n";

    fn at(places: &[&str], problem: &str) -> Invalid {
        Invalid {
            at: places.iter().map(|p| p.to_string()).collect(),
            problem: problem.into(),
            line: None,
        }
    }

    #[test]
    fn finds_the_field_of_the_entry_or_the_entry() {
        assert_eq!(line_of(TEXT, &at(&["field duration"], "bad")), Some(2));
        assert_eq!(line_of(TEXT, &at(&["[[event]] #2", "field at"], "bad")), Some(16));
        assert_eq!(line_of(TEXT, &at(&["[[event]] #2"], "bad")), Some(15));
        assert_eq!(
            line_of(TEXT, &at(&["[[lift]] \"L-2\""], "unknown field `floor`, expected …")),
            Some(10)
        );
        assert_eq!(line_of(TEXT, &at(&["[config]"], "unknown field `y`")), Some(17));
        assert_eq!(line_of(TEXT, &at(&[], "TOML parse error at line 3, column 1")), None);
    }
}
