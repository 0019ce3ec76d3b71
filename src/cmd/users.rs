//! `gridwatch users ...`: the HTTP API's users in the users file (`ingest --users FILE`).
//! A running ingest re-reads the file when it changes: no restart.
use anyhow::{Context, Result, bail};
use gridwatch_ingest::UsersFile;
use gridwatch_ingest::users_file::{describe, firm_assignment, grid_assignment};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand)]
pub(crate) enum UsersCommand {
    /// Add a user and print their bearer token (shown this once; only its SHA-256 is kept).
    Add(AddArgs),
    /// Remove a user: a running ingest refuses their token (401) within seconds, no restart.
    Revoke(RevokeArgs),
    /// List the users and what they may see (never token digests).
    List(FileArgs),
}

#[derive(clap::Args)]
pub(crate) struct FileArgs {
    /// The users file (TOML, docs/api.md); created by the first `add`.
    #[arg(long)]
    users: PathBuf,
}

#[derive(clap::Args)]
pub(crate) struct AddArgs {
    #[command(flatten)]
    file: FileArgs,
    /// The user's id, as the audit records of case steps name them (no spaces).
    #[arg(long)]
    id: String,
    /// Their name, as people read it.
    #[arg(long)]
    name: String,
    /// A grid role over a scope of 2, 4 or 6 digits (area, unit, grid), e.g.
    /// supervisor:0501; roles: grid_head, grid_administrator, information_officer,
    /// supervisor, inspector. Repeat for more.
    #[arg(long = "grid", value_name = "ROLE:SCOPE")]
    grids: Vec<String>,
    /// Staff of this maintenance firm (the register's 维保单位编码, e.g. MF04): they see
    /// the firm's devices. Repeat for more.
    #[arg(long = "firm", value_name = "FIRM")]
    firms: Vec<String>,
    /// Write the token to this new file (mode 0600) instead of printing it.
    #[arg(long)]
    token_file: Option<PathBuf>,
}

#[derive(clap::Args)]
pub(crate) struct RevokeArgs {
    #[command(flatten)]
    file: FileArgs,
    #[arg(long)]
    id: String,
}

pub(crate) fn run(command: UsersCommand) -> Result<()> {
    match command {
        UsersCommand::Add(args) => add(args),
        UsersCommand::Revoke(args) => {
            let path = &args.file.users;
            let mut file = existing(path)?;
            file.revoke(&args.id)
                .with_context(|| format!("users file {}", path.display()))?;
            file.save(path)?;
            eprintln!(
                "{} removed from {}; a running ingest refuses their token within seconds",
                args.id,
                path.display()
            );
            Ok(())
        }
        UsersCommand::List(args) => {
            let file = existing(&args.users)?;
            println!("{:<24} {:<24} assignments", "id", "name");
            for u in file.users() {
                let assignments: Vec<String> = u.assignments.iter().map(describe).collect();
                println!("{:<24} {:<24} {}", u.id, u.name, assignments.join(" "));
            }
            Ok(())
        }
    }
}

/// The users file at `path`, which must exist (only `add` creates one).
fn existing(path: &Path) -> Result<UsersFile> {
    if !path.exists() {
        bail!(
            "users file {} does not exist: `gridwatch users add --users {} --id ID --name NAME --grid ROLE:SCOPE` creates it",
            path.display(),
            path.display()
        );
    }
    Ok(UsersFile::load(path)?)
}

fn add(args: AddArgs) -> Result<()> {
    let path = &args.file.users;
    let mut assignments = Vec::new();
    for grid in &args.grids {
        assignments.push(grid_assignment(grid)?);
    }
    for firm in &args.firms {
        assignments.push(firm_assignment(firm)?);
    }
    let mut file = UsersFile::load_or_empty(path)?;
    let token = file
        .add(&args.id, &args.name, assignments)
        .with_context(|| format!("users file {}", path.display()))?;
    // The token file first: if it cannot be made, the users file stays as it was.
    if let Some(token_file) = &args.token_file {
        if token_file == path {
            bail!("--token-file is the users file itself: give another path");
        }
        write_token_file(token_file, &token)?;
        if let Err(e) = file.save(path) {
            let _ = std::fs::remove_file(token_file);
            return Err(e.into());
        }
        eprintln!(
            "{} added to {}; their token is in {} (mode 0600) and nowhere else, the users file keeps only its SHA-256: \
             send it as Authorization: Bearer TOKEN",
            args.id,
            path.display(),
            token_file.display()
        );
    } else {
        file.save(path)?;
        println!("{token}");
        eprintln!(
            "{} added to {}; the token above is shown only now and is not stored (the users file keeps only its SHA-256): \
             send it as Authorization: Bearer TOKEN",
            args.id,
            path.display()
        );
    }
    Ok(())
}

/// Writes `token` to a new file only its owner may read; an existing file is not replaced.
fn write_token_file(path: &Path, token: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| {
            format!(
                "--token-file {}: creating it (an existing file is never replaced)",
                path.display()
            )
        })?;
    file.write_all(format!("{token}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("--token-file {}: writing it", path.display()))
}
